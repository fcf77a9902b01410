// frontdesk console: CSRF header for htmx, SLA countdowns, and the review queue's keyboard flow
// (j/k move, 1–9 pick, Enter resolve, u undo, / search labels, Esc leave a field). No eval, no
// inline handlers: the page's Content-Security-Policy allows only scripts from /ui/static.
(function () {
  "use strict";

  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : null;
  }

  // Every htmx request carries the session's CSRF token.
  document.addEventListener("htmx:configRequest", function (e) {
    var token = meta("csrf-token");
    if (token) { e.detail.headers["X-CSRF-Token"] = token; }
  });

  // -- countdowns (SLA due times, the undo window) ------------------------------------------------
  function span(s) {
    var a = Math.abs(s), text;
    if (a < 60) { text = a + " s"; }
    else if (a < 3600) { text = Math.floor(a / 60) + " min"; }
    else if (a < 86400) { text = Math.floor(a / 3600) + " h " + Math.floor(a % 3600 / 60) + " min"; }
    else { text = Math.floor(a / 86400) + " d " + Math.floor(a % 86400 / 3600) + " h"; }
    return s < 0 ? "overdue " + text : text + " left";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var s = Math.round((Date.parse(el.getAttribute("data-due")) - now) / 1000);
      el.textContent = span(s);
      el.classList.toggle("overdue", s < 0);
    });
    var slot = document.getElementById("undo-slot");
    if (slot && !slot.hidden && slot.getAttribute("data-until") && Date.parse(slot.getAttribute("data-until")) < now) {
      slot.hidden = true;
    }
  }
  setInterval(tick, 1000);
  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("htmx:afterSettle", tick);

  // -- review queue -----------------------------------------------------------------------------
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#queue-list li[data-id]")); }
  function current() { var item = document.getElementById("item"); return item ? item.getAttribute("data-id") : null; }

  function markSelected(id) {
    rows().forEach(function (r) {
      var on = r.getAttribute("data-id") === id;
      r.classList.toggle("selected", on);
      if (on) { r.scrollIntoView({ block: "nearest" }); }
    });
  }

  function open(row) {
    if (!row || !window.htmx) { return; }
    markSelected(row.getAttribute("data-id"));
    window.htmx.ajax("GET", row.getAttribute("data-url"), { target: "#detail", swap: "innerHTML" });
  }

  function move(step) {
    var list = rows();
    if (!list.length) { return; }
    var id = current(), i = list.findIndex(function (r) { return r.getAttribute("data-id") === id; });
    var next = i < 0 ? list[0] : list[Math.min(Math.max(i + step, 0), list.length - 1)];
    if (next && next.getAttribute("data-id") !== id) { open(next); }
  }

  function knownLabel(value) {
    var options = document.querySelectorAll("#all-labels option");
    for (var i = 0; i < options.length; i++) { if (options[i].value === value) { return true; } }
    return false;
  }

  // Enter in the label search adds the label as a ticked chip instead of submitting.
  function addChip(input) {
    var value = input.value.trim();
    var picked = document.getElementById("picked");
    if (!value || !picked) { return false; }
    if (!knownLabel(value)) {
      picked.setAttribute("data-error", "1");
      toast("'" + value + "' is not a label of this model: use 'new intent' for a new name");
      return true;
    }
    var label = document.createElement("label");
    label.className = "chip";
    var box = document.createElement("input");
    box.type = "checkbox"; box.name = "label"; box.value = value; box.checked = true;
    label.appendChild(box);
    label.appendChild(document.createTextNode(" " + value));
    picked.appendChild(label);
    input.value = "";
    return true;
  }

  function anyLabel(form) {
    if (form.querySelector('input[name="label"]:checked, input[name="oos"]:checked')) { return true; }
    var fields = ["new_intent", "search_label"];
    for (var i = 0; i < fields.length; i++) {
      var f = form.querySelector('[name="' + fields[i] + '"]');
      if (f && f.value.trim()) { return true; }
    }
    return false;
  }

  function toast(text) {
    var el = document.getElementById("toast");
    if (!el) { return; }
    el.textContent = text;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { el.textContent = ""; }, 4000);
  }

  function undo() {
    var slot = document.getElementById("undo-slot");
    if (!slot || slot.hidden || !slot.getAttribute("data-undo-url")) { toast("nothing to undo"); return; }
    if (Date.parse(slot.getAttribute("data-until")) < Date.now()) { toast("too late to undo (10 s)"); return; }
    window.htmx.ajax("POST", slot.getAttribute("data-undo-url"), { target: "#detail", swap: "innerHTML" });
  }

  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    var target = e.target;
    if (target && target.id === "label-search" && e.key === "Enter") {
      if (target.value.trim()) { e.preventDefault(); addChip(target); }
      return;
    }
    if (typing(target)) {
      if (e.key === "Escape") { target.blur(); }
      return;
    }
    if (!document.body.classList.contains("queue-page")) { return; }
    var form = document.getElementById("resolve");
    if (e.key === "j") { e.preventDefault(); move(1); }
    else if (e.key === "k") { e.preventDefault(); move(-1); }
    else if (e.key === "u") { e.preventDefault(); undo(); }
    else if (e.key === "/") {
      var search = document.getElementById("label-search");
      if (search) { e.preventDefault(); search.focus(); }
    } else if (/^[1-9]$/.test(e.key) && form) {
      var box = form.querySelector('input[data-key="' + e.key + '"]');
      if (box) { e.preventDefault(); box.checked = !box.checked; }
    } else if (e.key === "Enter" && form) {
      e.preventDefault();
      if (!anyLabel(form)) { toast("pick a label first (1–9, / to search)"); return; }
      form.requestSubmit();
    }
  });

  // After a panel swap, keep the list's selection on the item shown.
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target && e.detail.target.id === "detail") {
      var id = current();
      if (id) { markSelected(id); }
      if (document.activeElement && typing(document.activeElement)) { document.activeElement.blur(); }
    }
  });

  // A click on a queue row: select it (htmx loads the panel).
  document.addEventListener("click", function (e) {
    var row = e.target.closest && e.target.closest("#queue-list li[data-id]");
    if (row) { markSelected(row.getAttribute("data-id")); }
  });
})();
