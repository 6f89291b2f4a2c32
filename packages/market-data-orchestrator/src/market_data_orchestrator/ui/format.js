// The pure parts of the status page (no DOM, no fetch): price ticks by the data's precision,
// what a job's replicas and throughput read, which controls apply to a job's state (and
// why not), what the backpressure panel says. index.html loads this file before app.js
// (as window.StatusFormat); Node loads it with require() for the unit tests
// (packages/market-data-orchestrator/tests/test_ui_format.py).
"use strict";

(function expose(root, api) {
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.StatusFormat = api;
})(typeof globalThis === "object" ? globalThis : this, (() => {
  const MAX_DECIMALS = 8;

  // The decimals `value` is written with (0.1 + 0.2 has one): the fewest that give it back.
  function decimalsOf(value) {
    if (!Number.isFinite(value)) return 0;
    for (let d = 0; d < MAX_DECIMALS; d += 1) {
      if (Math.abs(Number(value.toFixed(d)) - value) <= Math.abs(value) * 1e-12) return d;
    }
    return MAX_DECIMALS;
  }

  // The precision of a set of prices: the most decimals any of them has.
  function precisionOf(values) {
    return values.reduce((most, value) => Math.max(most, decimalsOf(value)), 0);
  }

  // The price axis of bars: the high, the middle (rounded to the data's precision) and the
  // low, each labelled with exactly as many decimals as the prices have.
  function priceTicks(bars) {
    const prices = bars.flatMap((b) => [b.open, b.high, b.low, b.close]);
    const decimals = precisionOf(prices);
    const high = Math.max(...prices);
    const low = Math.min(...prices);
    const middle = Number(((high + low) / 2).toFixed(decimals));
    const values = [high, middle, low].filter((v, i, all) => all.indexOf(v) === i);
    return values.map((value) => ({ value, label: value.toFixed(decimals) }));
  }

  // States in which a job's replicas are meant to run: "1 of 2 running" says how many do.
  const LIVE = new Set(["starting", "running", "stopping"]);

  // The Replicas cell: "1 of 1 running" while the job runs, "1 replica, paused" otherwise.
  function replicaText(job) {
    const desired = job.desired_replicas;
    if (LIVE.has(job.state)) {
      const running = job.replicas.filter((r) => r.state === "running").length;
      return `${running} of ${desired} running`;
    }
    return `${desired} ${desired === 1 ? "replica" : "replicas"}, ${job.state}`;
  }

  // The Throughput cell: records/s of the running replicas.
  function throughputText(job) {
    const running = job.replicas.filter((r) => r.state === "running");
    if (!running.length) return `none (${job.state === "running" ? "no replica running" : job.state})`;
    const total = running.reduce((sum, r) => sum + (r.items_per_second || 0), 0);
    return total >= 1000 ? `${(total / 1000).toFixed(1)}k records/s` : `${Math.round(total)} records/s`;
  }

  // States a job can be scaled in: it runs, is paused, or waits for its schedule (the
  // count applies to its next run). A completed, failed or stopped job runs nothing.
  const SCALABLE = new Set(["pending", "starting", "running", "paused"]);

  // Which control buttons apply to the job's state: {pause, resume, scale}, each
  // {enabled, reason} (reason: why not, for the button's tooltip; null when enabled).
  function controlStates(job) {
    const { name, state } = job;
    const allow = (enabled, reason) => ({ enabled, reason: enabled ? null : reason });
    return {
      pause: allow(state === "running", `Only a running job can be paused: ${name} is ${state}`),
      resume: allow(state === "paused", `Only a paused job can be resumed: ${name} is ${state}`),
      scale: allow(SCALABLE.has(state), `${name} is ${state}: it runs nothing to scale`),
    };
  }

  // The backpressure panel: {level, state, detail} from the orchestrator's view of its
  // feedback transport (GET /v1/feedback: transport, connected, reason) and the worst
  // latest event heard (or null). It says why when no current level can be heard.
  function backpressureText(transport, worst) {
    const queue = (event) => `queue ${event.queue_size} of ${event.capacity} (${event.coordinator_id})`;
    const reason = transport ? transport.reason : null;
    if (reason) {
      const last = worst ? `; last heard: ${worst.level}, ${queue(worst)}` : "";
      return { level: "unavailable", state: "unknown", detail: `${reason}${last}` };
    }
    if (worst) return { level: worst.level, state: worst.level, detail: queue(worst) };
    return { level: "unknown", state: "unknown", detail: "waiting for the first report" };
  }

  return {
    backpressureText,
    controlStates,
    decimalsOf,
    precisionOf,
    priceTicks,
    replicaText,
    throughputText,
  };
})());
