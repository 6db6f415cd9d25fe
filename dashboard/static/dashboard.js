// Trackside dashboard: live parts (Server-Sent Events) and small conveniences.
// Every page works without this script; it only adds live updates, instant filtering and checks.
(function () {
  "use strict";

  var prefix = document.body.getAttribute("data-prefix") || "/dashboard";
  var TONES = {
    running: "ok", done: "ok", approved: "ok", active: "ok",
    starting: "busy", in_progress: "busy", pending: "wait",
    error: "bad", failed: "bad", lost: "bad", rejected: "bad", revoked: "bad",
    stopped: "off", inactive: "off", expired: "off"
  };

  function badge(status, title) {
    var span = document.createElement("span");
    span.className = "badge badge-" + (TONES[status] || "off");
    span.setAttribute("data-status", status);
    if (title) { span.title = title; }
    span.textContent = status === "in_progress" ? "in progress" : status;
    return span;
  }

  function ago(seconds) {
    if (!seconds) { return "never"; }
    var diff = Date.now() / 1000 - seconds;
    if (diff < 2) { return "just now"; }
    if (diff < 60) { return Math.floor(diff) + " s ago"; }
    if (diff < 3600) { return Math.floor(diff / 60) + " min ago"; }
    if (diff < 86400) { return Math.floor(diff / 3600) + " h ago"; }
    var days = Math.floor(diff / 86400);
    return days + (days === 1 ? " day ago" : " days ago");
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) { return "—"; }
    if (seconds < 1) { return Math.round(seconds * 1000) + " ms"; }
    if (seconds < 10) { return seconds.toFixed(2) + " s"; }
    if (seconds < 60) { return seconds.toFixed(1) + " s"; }
    if (seconds < 3600) {
      var s = Math.floor(seconds % 60);
      return Math.floor(seconds / 60) + " min " + (s < 10 ? "0" : "") + s + " s";
    }
    var m = Math.floor(seconds % 3600 / 60);
    return Math.floor(seconds / 3600) + " h " + (m < 10 ? "0" : "") + m + " min";
  }

  function setLive(name, on, text) {
    var el = document.querySelector('[data-live="' + name + '"]');
    if (!el) { return; }
    el.setAttribute("data-state", on ? "on" : "off");
    el.textContent = text;
  }

  // An EventSource that reports its state on the page's live indicator.
  function listen(url, name, handlers, liveText) {
    var source = new EventSource(url);
    source.onopen = function () { setLive(name, true, liveText || "Live"); };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        setLive(name, false, "Live updates stopped: reload the page");
      } else {
        setLive(name, false, "Reconnecting…");
      }
    };
    Object.keys(handlers).forEach(function (event) {
      source.addEventListener(event, function (e) {
        var data = e.data;
        try { data = JSON.parse(e.data); } catch (err) { /* plain text */ }
        handlers[event](data, e, source);
      });
    });
    window.addEventListener("pagehide", function () { source.close(); });
    return source;
  }

  // ---- the jobs page -----------------------------------------------------------------------------

  function markRepeats(table) {
    table.querySelectorAll("tbody.family").forEach(function (body) {
      var first = true;
      body.querySelectorAll("tr").forEach(function (row) {
        if (row.hidden) { return; }
        row.cells[0].classList.toggle("repeat", !first && body.getAttribute("data-grouped") === "1");
        first = false;
      });
    });
  }

  // what the text filter looks in: the same cells as the server's filter (job_list.search_text)
  function searchText(row) {
    var cells = row.cells;
    return [0, 1, 3, 4].map(function (i) { return cells[i].textContent; }).join(" ").toLowerCase() +
      " " + row.getAttribute("data-status");
  }

  function jobsPage(table) {
    var form = document.querySelector("[data-job-filter]");
    var query = form && form.querySelector("#q");
    var status = form && form.querySelector("#status");
    var noMatch = document.querySelector("[data-no-match]");
    var changed = document.querySelector("[data-jobs-changed]");

    function filter() {
      var words = (query.value || "").toLowerCase().split(/\s+/).filter(Boolean);
      var wanted = status.value;
      var shown = 0;
      table.querySelectorAll("tr[data-job]").forEach(function (row) {
        var text = words.length ? searchText(row) : "";
        var ok = (!wanted || row.getAttribute("data-status") === wanted) &&
          words.every(function (w) { return text.indexOf(w) >= 0; });
        row.hidden = !ok;
        if (ok) { shown += 1; }
      });
      if (noMatch) { noMatch.hidden = shown > 0 || !table.querySelector("tr[data-job]"); }
      markRepeats(table);
      var params = new URLSearchParams(window.location.search);
      [["q", query.value.trim()], ["status", wanted]].forEach(function (pair) {
        if (pair[1]) { params.set(pair[0], pair[1]); } else { params.delete(pair[0]); }
      });
      var search = params.toString();
      window.history.replaceState(null, "", window.location.pathname + (search ? "?" + search : ""));
    }

    if (query && status) {
      query.addEventListener("input", filter);
      status.addEventListener("change", filter);
    }
    markRepeats(table);

    function update(entry) {
      var key = entry[0] + "/" + entry[1];
      var row = table.querySelector('tr[data-job="' + CSS.escape(key) + '"]');
      if (!row) { if (changed) { changed.hidden = false; } return; }
      var state = entry[2], error = entry[3], lastCall = entry[4], replicas = entry[5];
      var cell = row.querySelector('[data-cell="status"]');
      if (row.getAttribute("data-status") !== state || (cell.getAttribute("data-error") || "") !== (error || "")) {
        cell.textContent = "";
        cell.appendChild(badge(state, error));
        if (error) {
          var text = document.createElement("span");
          text.className = "error-text";
          text.textContent = error.length > 140 ? error.slice(0, 137) + "..." : error;
          cell.appendChild(text);
        }
        cell.setAttribute("data-error", error || "");
        row.setAttribute("data-status", state);
        var links = row.querySelector('[data-cell="links"]');
        if (links && (state === "running") !== !!links.querySelector("a")) {
          links.textContent = "reload to open";
          links.classList.add("muted");
        }
      }
      var last = row.querySelector('[data-cell="last-call"]');
      if (last) {
        last.setAttribute("data-time", lastCall || "");
        last.textContent = ago(lastCall);
      }
      var reps = row.querySelector('[data-cell="replicas"]');
      if (reps) { reps.textContent = replicas; }
    }

    listen(prefix + "/jobs/events", "jobs", {
      snapshot: function (data) { data.jobs.forEach(update); },
      change: function (data) { data.jobs.forEach(update); if (query) { filter(); } },
      removed: function (data) {
        data.jobs.forEach(function (entry) {
          var row = table.querySelector('tr[data-job="' + CSS.escape(entry[0] + "/" + entry[1]) + '"]');
          if (row) { row.classList.add("gone"); }
        });
        if (changed) { changed.hidden = false; }
      }
    }, "Live");

    window.setInterval(function () {
      table.querySelectorAll('[data-cell="last-call"]').forEach(function (cell) {
        var t = parseFloat(cell.getAttribute("data-time"));
        cell.textContent = ago(isNaN(t) ? null : t);
      });
    }, 15000);
  }

  // ---- following a job's log ----------------------------------------------------------------------

  function logFollower(button) {
    var pre = document.querySelector("[data-log]");
    var source = null;
    var MAX_LINES = 5000;

    function append(text) {
      var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
      pre.appendChild(document.createTextNode((pre.textContent ? "\n" : "") + text));
      while (pre.childNodes.length > MAX_LINES) { pre.removeChild(pre.firstChild); }
      if (atBottom) { pre.scrollTop = pre.scrollHeight; }
    }

    function stop(text) {
      if (source) { source.close(); source = null; }
      button.textContent = "Follow live";
      button.setAttribute("aria-pressed", "false");
      setLive("log", false, text || "Not following");
    }

    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", function () {
      if (source) { stop(); return; }
      button.textContent = "Stop following";
      button.setAttribute("aria-pressed", "true");
      setLive("log", false, "Connecting…");
      source = listen(button.getAttribute("data-follow-log") + "?tail=0", "log", {
        message: function (line) { append(String(line)); },
        dropped: function (data) { append("[" + data.lines + " lines left out: the browser read too slowly]"); },
        end: function (data) { stop(data && data.reason === "error" ? "The log ended with an error" : "The job stopped"); }
      }, "Following");
    });
  }

  // ---- deployments ---------------------------------------------------------------------------------

  function fillDeploymentRow(row, d) {
    var page = prefix + "/deployments/" + encodeURIComponent(d.id);
    row.setAttribute("data-deployment", d.id);
    var started = row.querySelector('[data-cell="started"]');
    started.href = page;
    var job = row.querySelector('[data-cell="job"]');
    job.href = prefix + "/jobs/" + encodeURIComponent(d.job_name) + "/" + encodeURIComponent(d.job_version);
    job.textContent = d.job_name + " " + d.job_version;
    var status = row.querySelector('[data-cell="status"]');
    status.textContent = "";
    status.appendChild(badge(d.status));
    if (d.error) {
      var error = document.createElement("span");
      error.className = "error-text";
      error.textContent = d.error.length > 160 ? d.error.slice(0, 157) + "..." : d.error;
      status.appendChild(error);
    }
    var phase = row.querySelector('[data-cell="phase"]');
    phase.textContent = d.phase || "—";
    if (d.status === "in_progress") {
      var bar = document.createElement("progress");
      bar.max = 6;
      bar.value = d.phases.length;
      bar.textContent = d.phases.length + " of 6";
      phase.appendChild(bar);
    }
    row.querySelector('[data-cell="duration"]').textContent = duration(d.duration_s);
    row.querySelector('[data-cell="by"]').textContent = d.deployed_by || "—";
  }

  function deploymentsPage(table) {
    var template = document.getElementById("deployment-row");
    var jobFilter = table.getAttribute("data-job-filter") || "";
    var statusFilter = table.getAttribute("data-status-filter") || "";
    var body = table.querySelector("tbody");
    var url = prefix + "/deployments/events" + (jobFilter ? "?job=" + encodeURIComponent(jobFilter) : "");
    listen(url, "deployments", {
      deployment: function (d) {
        var row = body.querySelector('tr[data-deployment="' + CSS.escape(d.id) + '"]');
        if (!row) {
          if (statusFilter && statusFilter !== d.status) { return; }
          row = template.content.querySelector("tr").cloneNode(true);
          body.insertBefore(row, body.firstChild);
          var empty = document.querySelector("[data-empty]");
          if (empty) { empty.hidden = true; }
        }
        fillDeploymentRow(row, d);
      }
    }, "Live");
  }

  function deploymentPage(list) {
    var status = list.getAttribute("data-status");
    var log = document.querySelector("[data-build-log]");
    var total = document.querySelector("[data-total]");
    var created = null;
    var finished = false;

    function items() { return Array.prototype.slice.call(list.querySelectorAll("li")); }

    function finishCurrent(state, at) {
      items().forEach(function (li) {
        if (li.getAttribute("data-state") !== "current") { return; }
        li.setAttribute("data-state", state);
        var start = Date.parse(li.getAttribute("data-started"));
        if (!isNaN(start)) {
          li.querySelector("[data-duration]").textContent = duration(Math.max(0, (at - start) / 1000));
        }
      });
    }

    function tick() {
      if (finished) { return; }
      var now = Date.now();
      items().forEach(function (li) {
        if (li.getAttribute("data-state") !== "current") { return; }
        var start = Date.parse(li.getAttribute("data-started"));
        if (!isNaN(start)) { li.querySelector("[data-duration]").textContent = duration((now - start) / 1000); }
      });
      if (created !== null && total) { total.textContent = duration((now - created) / 1000); }
    }

    if (status !== "in_progress") { return; }
    var firstStart = list.querySelector("li[data-started]:not([data-started=''])");
    if (firstStart) { created = Date.parse(firstStart.getAttribute("data-started")); }
    var cleared = false;
    var noLog = document.querySelector("[data-no-log]");
    if (noLog) { noLog.hidden = true; }
    window.setInterval(tick, 1000);

    function end(data, state) {
      finished = true;
      var at = Date.now();
      finishCurrent(state, at);
      var badgeHolder = document.querySelector('h1 [data-cell="status"]');
      if (badgeHolder) { badgeHolder.textContent = ""; badgeHolder.appendChild(badge(data.status)); }
      if (state === "done") {
        var link = document.querySelector("[data-job-link]");
        if (link) { link.hidden = false; }
      } else {
        var error = document.querySelector("[data-error]");
        if (error) { error.textContent = data.error || "The deployment failed."; error.hidden = false; }
      }
      setLive("deployment", false, state === "done" ? "Finished: the job is running" : "Finished: it failed");
    }

    listen(list.getAttribute("data-events"), "deployment", {
      phase: function (data) {
        var at = Date.parse(data.started_at);
        finishCurrent("done", at);
        var li = list.querySelector('li[data-phase="' + CSS.escape(data.name) + '"]');
        if (!li) {
          li = document.createElement("li");
          li.setAttribute("data-phase", data.name);
          var name = document.createElement("span");
          name.className = "phase-name";
          name.textContent = data.name;
          var dur = document.createElement("span");
          dur.className = "nowrap";
          dur.setAttribute("data-duration", "");
          li.appendChild(name);
          li.appendChild(document.createTextNode(" "));
          li.appendChild(dur);
          list.appendChild(li);
        }
        li.setAttribute("data-started", data.started_at);
        li.setAttribute("data-state", data.name === "done" ? "done" : "current");
        if (data.index === 0 && created === null) { created = at; }
        tick();
      },
      log: function (data) {
        if (!cleared) { log.textContent = ""; cleared = true; }
        log.appendChild(document.createTextNode((log.textContent ? "\n" : "") + data.line));
        log.scrollTop = log.scrollHeight;
      },
      warning: function (data) {
        var warnings = document.querySelector("[data-warnings]");
        var li = document.createElement("li");
        li.textContent = data.message;
        warnings.appendChild(li);
        warnings.hidden = false;
      },
      done: function (data, e, source) { source.close(); end(data, "done"); },
      failed: function (data, e, source) { source.close(); end(data, "failed"); }
    }, "Live");
  }

  // ---- forms -----------------------------------------------------------------------------------------

  function deleteForm(form) {
    var input = form.querySelector("[data-expect]");
    var button = form.querySelector("button[type='submit']");
    function check() { button.disabled = input.value.trim() !== input.getAttribute("data-expect"); }
    input.addEventListener("input", check);
    check();
  }

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = button.getAttribute("data-copy");
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
      }
    });
  });

  var jobsTable = document.querySelector("[data-jobs-table]");
  if (jobsTable) { jobsPage(jobsTable); }
  var follow = document.querySelector("[data-follow-log]");
  if (follow) { logFollower(follow); }
  var deploymentsTable = document.querySelector("[data-deployments-table]");
  if (deploymentsTable) { deploymentsPage(deploymentsTable); }
  var phases = document.querySelector("[data-phases]");
  if (phases) { deploymentPage(phases); }
  document.querySelectorAll("[data-delete-form]").forEach(deleteForm);
})();
