/* b24sign app pages: the signed page token on every XHR, Bitrix24 frame fitting, local times. */
(function () {
  "use strict";
  var root = document.getElementById("app");
  if (!root) { return; }
  var token = root.dataset.token, lang = root.dataset.lang || "en";
  var bx = window.BX24 || null;

  function fit() { if (bx && bx.fitWindow) { try { bx.fitWindow(); } catch (e) { /* outside a portal */ } } }

  // Times: the server writes UTC; show them in the user's zone and language.
  var fmt = window.Intl ? new Intl.DateTimeFormat(lang, {dateStyle: "medium", timeStyle: "short"}) : null;
  Array.prototype.forEach.call(document.querySelectorAll("time[datetime]"), function (el) {
    var d = new Date(el.getAttribute("datetime"));
    if (fmt && !isNaN(d)) { el.title = el.textContent; el.textContent = fmt.format(d); }
  });

  // Links to the CRM open in the portal's own slider when we are inside Bitrix24.
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a[data-path]");
    if (a && bx && bx.openPath) { ev.preventDefault(); bx.openPath(a.dataset.path); }
  });

  // "Copy" next to a signing link (request page of a request sent with "I send the link myself").
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest && ev.target.closest("button.copy[data-link]");
    if (!btn) { return; }
    var done = function () { btn.textContent = "\u2713"; };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(btn.dataset.link).then(done, done);
    } else {
      btn.closest("tr").querySelector("input").select(); document.execCommand("copy"); done();
    }
  });

  // Destructive forms ask first.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) { ev.preventDefault(); }
  });

  // "Test connection" answers in place: an XHR carrying the token in a header (no cookies in a frame).
  Array.prototype.forEach.call(document.querySelectorAll("form.test-form"), function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var out = document.getElementById(form.dataset.verdict), button = form.querySelector("button");
      button.disabled = true;
      if (out) { out.className = "verdict busy"; out.textContent = "…"; }
      fetch(form.action, {method: "POST", headers: {"X-B24Sign-Token": token, "Accept": "application/json"},
                          credentials: "omit"})
        .then(function (r) { return r.json(); })
        .then(function (data) {
          if (out) { out.className = "verdict " + (data.ok ? "ok" : "bad"); out.textContent = (data.ok ? "✓ " : "✗ ") + data.message; }
        })
        .catch(function () { if (out) { out.className = "verdict bad"; out.textContent = "✗ network error"; } })
        .then(function () { button.disabled = false; fit(); });
    });
  });

  // After a settings action, bring the section it changed into view.
  var settings = document.getElementById("settings");
  if (settings && settings.dataset.section) {
    var target = document.getElementById("provider-" + settings.dataset.section) || document.getElementById(settings.dataset.section);
    if (target && target.scrollIntoView) { target.scrollIntoView({block: "start"}); }
  }
  if (bx) { bx.init(function () { fit(); if (bx.setTitle) { bx.setTitle(document.title); } }); }
  window.addEventListener("load", fit);
})();
