// The catalogue site's two behaviours: the search box over the index that
// search-index.js loads, and filters by category and risk on the tables of a server's
// page. Without JavaScript every table shows every row.
(function () {
  "use strict";
  var root = document.body.getAttribute("data-root") || "";

  // -- search ---------------------------------------------------------------------------
  var input = document.getElementById("search");
  var list = document.getElementById("search-results");
  var index = window.mcpwallSearch || [];
  var LIMIT = 25;

  function matches(query) {
    var words = query.toLowerCase().split(/\s+/).filter(Boolean);
    var found = [];
    for (var i = 0; i < index.length && found.length < LIMIT; i++) {
      var entry = index[i];
      var text = (entry.name + " " + entry.about + " " + entry.kind).toLowerCase();
      if (words.every(function (w) { return text.indexOf(w) !== -1; })) found.push(entry);
    }
    // Exact and prefix matches of the name first: "fetch" finds the tool called fetch.
    var q = words.join(" ");
    function rank(e) {
      var n = e.name.toLowerCase();
      return n === q ? 0 : n.indexOf(q) === 0 ? 1 : 2;
    }
    return found.sort(function (a, b) { return rank(a) - rank(b); });
  }

  function show(query) {
    list.textContent = "";
    if (!query.trim()) { list.hidden = true; return; }
    var found = matches(query);
    if (!found.length) {
      var none = document.createElement("li");
      none.className = "none";
      none.textContent = "Nothing matches.";
      list.appendChild(none);
    }
    found.forEach(function (entry) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = root + entry.url;
      var kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = entry.kind;
      var about = document.createElement("span");
      about.className = "about";
      about.textContent = entry.about;
      link.appendChild(kind);
      link.appendChild(document.createTextNode(entry.name));
      link.appendChild(about);
      item.appendChild(link);
      list.appendChild(item);
    });
    list.hidden = false;
  }

  if (input && list) {
    input.addEventListener("input", function () { show(input.value); });
    input.form.addEventListener("submit", function (event) {
      event.preventDefault();
      var first = list.querySelector("a");
      if (first) window.location.href = first.href;
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { list.hidden = true; input.blur(); }
    });
  }

  // -- filters --------------------------------------------------------------------------
  if (document.body.getAttribute("data-page") !== "server") return;

  function column(table, name) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].textContent.trim().toLowerCase() === name) return i;
    }
    return -1;
  }

  function select(label, id, values) {
    var wrap = document.createElement("label");
    wrap.textContent = label + " ";
    var box = document.createElement("select");
    box.id = id;
    ["all"].concat(values).forEach(function (value) {
      var option = document.createElement("option");
      option.value = value;
      option.textContent = value === "all" ? "All" : value;
      box.appendChild(option);
    });
    wrap.appendChild(box);
    return { label: wrap, box: box };
  }

  var ORDER = ["Read", "Write", "Destructive", "Financial", "Execute",
               "Low", "Medium", "High", "Critical"];

  Array.prototype.forEach.call(document.querySelectorAll("main table"), function (table) {
    var byCategory = column(table, "category");
    var byRisk = column(table, "risk");
    if (byCategory < 0 || byRisk < 0) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    function values(at) {
      var seen = {};
      rows.forEach(function (row) { seen[row.cells[at].textContent.trim()] = true; });
      return Object.keys(seen).sort(function (a, b) { return ORDER.indexOf(a) - ORDER.indexOf(b); });
    }
    var category = select("Category", "filter-category", values(byCategory));
    var risk = select("Risk", "filter-risk", values(byRisk));
    var count = document.createElement("output");
    count.id = "filter-count";
    var bar = document.createElement("div");
    bar.className = "filters";
    bar.appendChild(category.label);
    bar.appendChild(risk.label);
    bar.appendChild(count);
    table.parentNode.insertBefore(bar, table);

    function apply() {
      var shown = 0;
      rows.forEach(function (row) {
        var fits = (category.box.value === "all" ||
                    row.cells[byCategory].textContent.trim() === category.box.value) &&
                   (risk.box.value === "all" ||
                    row.cells[byRisk].textContent.trim() === risk.box.value);
        row.hidden = !fits;
        if (fits) shown++;
      });
      count.textContent = shown + " of " + rows.length + " tools";
    }
    category.box.addEventListener("change", apply);
    risk.box.addEventListener("change", apply);
    apply();
  });
})();
