/* The on-sale dashboard: GET /admin/dashboard/data every REFRESH_MS with the admin's token, drawn
   as figures, per-category tables, small rate charts and the seat map (fetched with its ETag, so
   an unchanged map costs a 304). */
"use strict";
(function () {
  var t = Pages.strings;
  var REFRESH_MS = 2000;
  var maps = {};  // show id -> {etag, url}

  function el(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }
  function number(value) {
    return value === null || value === undefined ? "–" : value.toLocaleString(undefined, {maximumFractionDigits: 1});
  }
  function latest(points) { return points.length ? points[points.length - 1][1] : null; }

  /* A rate over the last minutes as a small line chart; the figure beside it says the same in words. */
  function chart(points, label) {
    var ns = "http://www.w3.org/2000/svg", width = 160, height = 36;
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", width); svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label + ": " + number(latest(points)) + " " + t.now + ", " + t.last_minutes);
    var border = document.createElementNS(ns, "rect");
    border.setAttribute("width", width); border.setAttribute("height", height);
    border.setAttribute("fill", "#f4f6f8"); border.setAttribute("stroke", "#c5cbd3");
    svg.appendChild(border);
    if (points.length === 1) points = [[points[0][0] - 1, points[0][1]], points[0]];
    if (points.length > 1) {
      var first = points[0][0], last = points[points.length - 1][0] || first + 1;
      var top = Math.max.apply(null, points.map(function (p) { return p[1]; })) || 1;
      var line = document.createElementNS(ns, "polyline");
      line.setAttribute("fill", "none"); line.setAttribute("stroke", "#0b5394"); line.setAttribute("stroke-width", "1.5");
      line.setAttribute("points", points.map(function (p) {
        return ((p[0] - first) / (last - first || 1) * (width - 4) + 2).toFixed(1) + "," +
               (height - 3 - p[1] / top * (height - 6)).toFixed(1);
      }).join(" "));
      svg.appendChild(line);
    }
    return svg;
  }

  function categoryTable(show) {
    var reserved = show.seating === "reserved";
    var columns = reserved ? ["category", "capacity", "sold", "held", "blocked", "remaining"]
                           : ["category", "capacity", "taken", "remaining"];
    var head = el("tr", {}, columns.map(function (c) { return el("th", {scope: "col"}, [t[c]]); }));
    var rows = show.seats.categories.map(function (category) {
      return el("tr", {}, columns.map(function (c, i) {
        var value = c === "category" ? category.name : number(category[c]);
        return i === 0 ? el("th", {scope: "row"}, [value]) : el("td", {}, [value]);
      }));
    });
    return el("table", {}, [el("caption", {}, [show.title + ": " + t.remaining + " " + number(show.seats.remaining) +
                                               " / " + number(show.seats.capacity)]),
                           el("thead", {}, [head]), el("tbody", {}, rows)]);
  }

  function showSection(show) {
    var headingId = "show-" + show.id;
    var when = t.starts + " " + new Date(show.starts_at).toLocaleString(document.documentElement.lang) +
      (show.on_sale_at ? ", " + t.on_sale + " " + new Date(show.on_sale_at).toLocaleString(document.documentElement.lang) : "") +
      (show.cancelled ? ", " + t.cancelled : "");
    var figures = [
      el("div", {}, [el("dt", {}, [t.seats_per_second]),
                     el("dd", {}, [number(latest(show.seats_taken_per_second)), chart(show.seats_taken_per_second, t.seats_per_second)])])];
    if (show.queue) {
      figures.push(el("div", {}, [el("dt", {}, [t.queue]),
        el("dd", {}, [number(show.queue.waiting) + " " + t.waiting + ", " + number(show.queue.admitted_total) + " " +
                      t.admitted + ", " + number(show.queue.admit_per_minute) + " " + t.rate])]));
      figures.push(el("div", {}, [el("dt", {}, [t.admissions_per_second]),
        el("dd", {}, [number(latest(show.queue.admissions_per_second)),
                      chart(show.queue.admissions_per_second, t.admissions_per_second)])]));
    } else {
      figures.push(el("div", {}, [el("dt", {}, [t.queue]), el("dd", {}, [t.no_queue])]));
    }
    var section = el("section", {"class": "show", "aria-labelledby": headingId, "data-show": show.id}, [
      el("h2", {id: headingId}, [show.title]), el("p", {"class": "quiet"}, [show.venue + ". " + when]),
      el("dl", {"class": "figures"}, figures), categoryTable(show)]);
    if (show.seating === "reserved") {
      var image = el("img", {alt: t.seat_map + " " + show.title, "class": "seat-map", id: "map-" + show.id});
      if (maps[show.id]) image.src = maps[show.id].url;
      section.appendChild(el("figure", {}, [image]));
      refreshMap(show.id);
    }
    return section;
  }

  function refreshMap(showId) {
    var known = maps[showId];
    var headers = known ? {"If-None-Match": known.etag} : {};
    fetch("/shows/" + encodeURIComponent(showId) + "/seats.svg", {headers: headers, cache: "no-store"}).then(function (response) {
      if (response.status !== 200) return;
      var etag = response.headers.get("ETag");
      return response.blob().then(function (blob) {
        if (known) URL.revokeObjectURL(known.url);
        maps[showId] = {etag: etag, url: URL.createObjectURL(blob)};
        var image = document.getElementById("map-" + showId);
        if (image) { image.src = maps[showId].url; image.dataset.etag = etag; }
      });
    }).catch(function () {});
  }

  function consistency(report) {
    if (!report.violations) return t.not_measured;
    var found = Object.keys(report.violations).filter(function (k) { return report.violations[k] > 0; });
    var words = found.length ? found.map(function (k) { return k + " " + report.violations[k]; }).join(", ")
                             : t.violations + ": " + t.none;
    return words + " (" + t.measured + " " + report.age_s + " " + t.ago + ")";
  }

  function draw(data) {
    document.getElementById("overall").hidden = false;
    document.getElementById("bps").textContent = number(latest(data.bookings_per_second));
    var holder = document.getElementById("bps-chart");
    holder.replaceChildren(chart(data.bookings_per_second, t.bookings_per_second));
    document.getElementById("charges-pending").textContent = number(data.charges.pending);
    document.getElementById("charges-failed").textContent = number(data.charges.failed);
    document.getElementById("consistency").textContent = consistency(data.consistency);
    document.getElementById("updated").textContent = new Date(data.generated_at).toLocaleTimeString(document.documentElement.lang);
    var shows = document.getElementById("shows");
    shows.replaceChildren.apply(shows, data.shows.length ? data.shows.map(showSection) : [el("p", {}, [t.no_shows])]);
    document.getElementById("dashboard").dataset.state = "shown";
  }

  function refresh() {
    Pages.call("GET", "/admin/dashboard/data").then(function (answer) {
      var status = document.getElementById("status");
      if (answer.status === 200) { status.textContent = ""; draw(answer.data); }
      else if (answer.status === 401 || answer.status === 403) {
        status.textContent = t.not_admin; sessionStorage.removeItem("boxoffice.token");
        document.getElementById("signin").hidden = false; return;
      } else { status.textContent = t.retry; }
      setTimeout(refresh, REFRESH_MS);
    }, function () { document.getElementById("status").textContent = t.retry; setTimeout(refresh, REFRESH_MS); });
  }

  Pages.signIn(refresh);
})();
