// certfleet dashboard: small progressive enhancements; every page also works without them.
(function () {
  "use strict";

  function setupFilters(form) {
    var metaEl = form.querySelector("script.columns-meta");
    if (!metaEl) return;
    var meta = {};
    JSON.parse(metaEl.textContent).forEach(function (c) { meta[c.key] = c; });
    var labels = {contains: "Contains", eq: "Equals", before: "Before", after: "After", lt: "Less than", gt: "More than"};

    function refresh(row) {
      var col = meta[row.querySelector("[name=fc]").value];
      var opSel = row.querySelector("[name=fo]");
      var current = opSel.value;
      var ops = col ? col.ops : ["contains", "eq"];
      opSel.innerHTML = "";
      ops.forEach(function (o) {
        var opt = document.createElement("option");
        opt.value = o; opt.textContent = labels[o] || o;
        if (o === current) opt.selected = true;
        opSel.appendChild(opt);
      });
      var valEl = row.querySelector("[name=fv]");
      var value = valEl.value;
      var wantSelect = col && col.choices && col.choices.length > 0;
      var repl;
      if (wantSelect) {
        repl = document.createElement("select");
        ["All"].concat(col.choices).forEach(function (v) {
          var opt = document.createElement("option");
          opt.value = v; opt.textContent = v;
          if (v === value) opt.selected = true;
          repl.appendChild(opt);
        });
      } else if (col && col.type === "bool") {
        repl = document.createElement("select");
        ["All", "Yes", "No"].forEach(function (v) {
          var opt = document.createElement("option"); opt.value = v; opt.textContent = v;
          if (v === value) opt.selected = true; repl.appendChild(opt);
        });
      } else {
        repl = document.createElement("input");
        repl.value = value;
        if (col && col.type === "date") { repl.type = "date"; repl.placeholder = "2026-02-05"; }
        else if (col && (col.type === "number" || col.type === "days_left")) { repl.type = "number"; }
        else { repl.placeholder = "Value (All = any)"; }
        if (repl.type === "date" && value && !/^\d{4}-\d{2}-\d{2}$/.test(value)) repl.type = "text";
      }
      repl.name = "fv";
      repl.setAttribute("aria-label", "Value");
      repl.setAttribute("data-testid", "filter-value");
      valEl.replaceWith(repl);
    }

    form.querySelectorAll(".filter-row").forEach(function (row) {
      refresh(row);
      row.querySelector("[name=fc]").addEventListener("change", function () { refresh(row); });
    });
    form.addEventListener("click", function (ev) {
      if (ev.target.classList.contains("remove-filter")) {
        var rows = form.querySelectorAll(".filter-row");
        var row = ev.target.closest(".filter-row");
        if (rows.length > 1) row.remove();
        else { row.querySelector("[name=fc]").value = ""; refresh(row); row.querySelector("[name=fv]").value = ""; }
      }
      if (ev.target.classList.contains("add-filter")) {
        var first = form.querySelector(".filter-row");
        var clone = first.cloneNode(true);
        clone.querySelector("[name=fc]").value = "";
        var v = clone.querySelector("[name=fv]"); if (v.tagName === "INPUT") v.value = "";
        form.querySelector(".filter-rows").appendChild(clone);
        refresh(clone);
        clone.querySelector("[name=fc]").addEventListener("change", function () { refresh(clone); });
      }
    });
  }

  // Add Server / CA connector forms: show only the fields of the chosen type.
  // A switch marked data-switch-own drives only the elements whose data-show-by names it (the Add Server
  // form's OS / Connection); the others drive the elements without data-show-by.
  function setupSwitch(select) {
    var scope = select.closest("form");
    var name = select.getAttribute("data-switch");
    var own = select.hasAttribute("data-switch-own");
    function apply() {
      var value = select.value;
      scope.querySelectorAll("[data-show-for]").forEach(function (el) {
        var by = el.getAttribute("data-show-by");
        if (own ? by !== name : by) return;
        var show = el.getAttribute("data-show-for").split(" ").indexOf(value) >= 0;
        el.hidden = !show;
        el.querySelectorAll("input,select,textarea").forEach(function (i) { i.disabled = !show; });
      });
      scope.querySelectorAll("[data-label-for]").forEach(function (el) {
        var labels = JSON.parse(el.getAttribute("data-label-for"));
        if (labels[value]) el.textContent = labels[value];
      });
    }
    select.addEventListener("change", apply);
    apply();
  }

  function setupConfirm(form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.getAttribute("data-confirm"))) ev.preventDefault();
    });
  }

  // Tiles fed by Prefect flow-run state: counts fetched from the API, which asks Prefect.
  function loadRunCounts(el) {
    fetch(el.getAttribute("data-runs-src"), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        el.querySelectorAll("[data-run-state]").forEach(function (span) {
          var n = data.counts ? data.counts[span.getAttribute("data-run-state")] : null;
          span.textContent = n === null || n === undefined ? "n/a" : String(n);
        });
        if (data.error) el.setAttribute("title", data.error);
      })
      .catch(function () {});
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.filters").forEach(setupFilters);
    document.querySelectorAll("select[data-switch]").forEach(setupSwitch);
    document.querySelectorAll("form[data-confirm]").forEach(setupConfirm);
    document.querySelectorAll("[data-runs-src]").forEach(loadRunCounts);
    document.querySelectorAll("[data-copy]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var target = document.getElementById(btn.getAttribute("data-copy"));
        if (target && navigator.clipboard) navigator.clipboard.writeText(target.textContent.trim());
      });
    });
  });
})();
