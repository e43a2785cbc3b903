// Measures two PostgreSQL job queues from the Node ecosystem, graphile-worker
// and pg-boss, so the CaraML engine benchmark can put them beside its own
// figures from the same machine and database.
//
//   node peers.mjs --system graphile|graphile-default|pgboss \
//     --mode drain|latency --database-url postgres://postgres@127.0.0.1:5432/caraml_peers \
//     [--jobs 20000] [--concurrency 8] [--samples 200] [--warmup 20] \
//     [--interval-ms 20] [--batch-delay-ms 0] [--timeout-s 300] [--peers-dir DIR]
//
// Run it with the Node 22 binary that install.sh prints. Exactly one JSON
// object goes to stdout; everything else goes to stderr.
//
// drain:   N no-op jobs are enqueued before any worker exists. The clock runs
//          from the worker start call until a query shows all N completed.
//          That span includes each library's own start-up work (pool
//          connections, schema version check, LISTEN).
// latency: with an idle worker running, single jobs are enqueued every
//          interval-ms. Each sample is the time from just before the enqueue
//          call to the start of its handler (same process, monotonic clock).
//          The first --warmup samples are dropped.
//
// --system graphile is batch mode (local queue of 500, batched completions
// delayed by --batch-delay-ms). graphile-default is the library's defaults.
//
// Every run drops and recreates the system's own schema, so runs repeat.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const SCHEMAS = {
  graphile: 'caraml_peer_graphile',
  'graphile-default': 'caraml_peer_graphile',
  pgboss: 'caraml_peer_pgboss',
};
const ENQUEUE_CHUNK = 1000;

const log = (...parts) => console.error('peers:', ...parts);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parseOptions() {
  const { values } = parseArgs({
    options: {
      system: { type: 'string' },
      mode: { type: 'string' },
      'database-url': { type: 'string' },
      jobs: { type: 'string', default: '20000' },
      concurrency: { type: 'string', default: '8' },
      samples: { type: 'string', default: '200' },
      warmup: { type: 'string', default: '20' },
      'interval-ms': { type: 'string', default: '20' },
      'batch-delay-ms': { type: 'string', default: '0' },
      'timeout-s': { type: 'string', default: '300' },
      'peers-dir': { type: 'string' },
    },
  });
  const readCount = (name) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 0) {
      throw new Error(`invalid --${name} ${values[name]}: expected a whole number`);
    }
    return n;
  };
  if (!(values.system in SCHEMAS)) {
    throw new Error(`invalid --system ${values.system}: expected one of ${Object.keys(SCHEMAS).join(', ')}`);
  }
  if (values.mode !== 'drain' && values.mode !== 'latency') {
    throw new Error(`invalid --mode ${values.mode}: expected drain or latency`);
  }
  const url = values['database-url'];
  if (!url) throw new Error('missing --database-url, e.g. postgres://postgres@127.0.0.1:5432/caraml_peers');
  // The benchmark loads only a database on this machine.
  const host = new URL(url).hostname;
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(host)) {
    throw new Error(`invalid --database-url host ${host || '(none)'}: expected 127.0.0.1, localhost or [::1]`);
  }
  const scriptDir = path.dirname(fileURLToPath(import.meta.url));
  return {
    system: values.system,
    mode: values.mode,
    url,
    jobs: Math.max(1, readCount('jobs')),
    concurrency: Math.max(1, readCount('concurrency')),
    samples: Math.max(1, readCount('samples')),
    warmup: readCount('warmup'),
    intervalMs: readCount('interval-ms'),
    batchDelayMs: readCount('batch-delay-ms'),
    timeoutS: Math.max(1, readCount('timeout-s')),
    peersDir: path.resolve(values['peers-dir'] ?? path.join(scriptDir, '../../target/bench-peers')),
  };
}

// Imports a package from the scratch directory that install.sh filled,
// because the packages are not installed beside this script.
async function loadPackage(peersDir, name) {
  const require = createRequire(path.join(peersDir, 'package.json'));
  let file;
  try {
    file = require.resolve(name);
  } catch {
    throw new Error(`${name} not found in ${peersDir}: run bench/peers/install.sh ${peersDir} first`);
  }
  return import(pathToFileURL(file).href);
}

async function withClient(opts, fn) {
  const pg = (await loadPackage(opts.peersDir, 'pg')).default;
  const client = new pg.Client({ connectionString: opts.url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function dropSchema(opts, schema) {
  return withClient(opts, (c) => c.query(`drop schema if exists ${schema} cascade`));
}

// Polls until check() is true. Drain calls it only after every handler has
// run, so it adds no load while the worker is busy.
async function waitFor(check, everyMs = 5) {
  while (!(await check())) await sleep(everyMs);
}

// Creates a promise with its resolve function, so a handler can tell the
// main flow that it has seen enough jobs.
function signal() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

// ---------------------------------------------------------------- graphile

function graphileOptions(opts) {
  const worker = {
    concurrentJobs: opts.concurrency,
    maxPoolSize: 10,
    pollInterval: 2000,
  };
  if (opts.system === 'graphile') {
    worker.localQueue = { size: 500 };
    worker.completeJobBatchDelay = opts.batchDelayMs;
    worker.failJobBatchDelay = opts.batchDelayMs;
  }
  return worker;
}

async function graphile(opts, handler) {
  const graphileWorker = await loadPackage(opts.peersDir, 'graphile-worker');
  const schema = SCHEMAS[opts.system];
  // graphile-worker logs every completed job at info level, so only errors
  // and warnings are printed.
  const logger = new graphileWorker.Logger(() => (level, message) => {
    if (level === 'error' || level === 'warning') log(`graphile ${level}: ${message}`);
  });
  const options = graphileOptions(opts);
  const preset = { worker: { connectionString: opts.url, schema, ...options } };

  await dropSchema(opts, schema);
  const utils = await graphileWorker.makeWorkerUtils({ preset, logger });
  await utils.migrate();

  let runner = null;
  return {
    options,
    enqueueMany: (n) => utils.addJobs(Array.from({ length: n }, () => ({ identifier: 'job', payload: {} }))),
    enqueueOne: (payload) => utils.addJob('job', payload),
    start: async () => {
      runner = await graphileWorker.run({
        preset,
        logger,
        noHandleSignals: true,
        taskList: { job: async (payload) => handler([payload]) },
      });
    },
    remaining: () => withClient(opts, async (c) =>
      (await c.query(`select count(*)::int as n from ${schema}._private_jobs`)).rows[0].n),
    stop: async () => {
      if (runner) await runner.stop();
      await utils.release();
    },
  };
}

// ----------------------------------------------------------------- pg-boss

async function pgboss(opts, handler) {
  const { PgBoss } = await loadPackage(opts.peersDir, 'pg-boss');
  const schema = SCHEMAS.pgboss;
  const queue = 'bench';
  const bossOptions = { max: 10, useListenNotify: true };
  // pg-boss 12 rejects polling intervals below 0.5 s, and NOTIFY wakes the
  // workers sooner. burstWhenBatchFull makes a worker fetch again at once
  // after a full batch instead of sleeping the interval.
  const work = {
    batchSize: 100,
    localConcurrency: opts.concurrency,
    pollingIntervalSeconds: 0.5,
    notifyPollingIntervalSeconds: 0.5,
    burstWhenBatchFull: true,
  };
  const queueOptions = { notify: true };

  await dropSchema(opts, schema);
  const boss = new PgBoss({ connectionString: opts.url, schema, ...bossOptions });
  boss.on('error', (err) => log('pg-boss error:', err.message));
  await boss.start();
  await boss.createQueue(queue, queueOptions);

  return {
    options: { ...bossOptions, queue: queueOptions, work },
    enqueueMany: (n) => boss.insert(queue, Array.from({ length: n }, () => ({ data: {} }))),
    enqueueOne: (payload) => boss.send(queue, payload),
    start: () => boss.work(queue, work, async (jobs) => handler(jobs.map((j) => j.data))),
    // pg-boss keeps completed jobs (7 days by default), so remaining jobs
    // are those in any other state.
    remaining: () => withClient(opts, async (c) => {
      const { rows } = await c.query(
        `select count(*)::int as n from ${schema}.job where name = $1 and state <> 'completed'`,
        [queue]);
      return rows[0].n;
    }),
    stop: () => boss.stop({ graceful: true, timeout: 10_000 }),
  };
}

// ------------------------------------------------------------------ modes

async function drain(opts) {
  let seen = 0;
  const allSeen = signal();
  const target = await makeSystem(opts, (payloads) => {
    seen += payloads.length;
    if (seen >= opts.jobs) allSeen.resolve();
  });
  try {
    log(`enqueueing ${opts.jobs} jobs`);
    for (let done = 0; done < opts.jobs; done += ENQUEUE_CHUNK) {
      await target.enqueueMany(Math.min(ENQUEUE_CHUNK, opts.jobs - done));
    }
    const queued = await target.remaining();
    if (queued !== opts.jobs) {
      throw new Error(`enqueue failed: expected ${opts.jobs} queued jobs, found ${queued}`);
    }
    log('starting worker');
    const started = performance.now();
    await target.start();
    if (opts.jobs > 0) await allSeen.promise;
    await waitFor(async () => (await target.remaining()) === 0);
    const seconds = (performance.now() - started) / 1000;
    return {
      jobs: opts.jobs,
      concurrency: opts.concurrency,
      seconds: round(seconds, 3),
      jobs_per_second: Math.round(opts.jobs / seconds),
      options: target.options,
    };
  } finally {
    await target.stop();
  }
}

async function latency(opts) {
  const total = opts.warmup + opts.samples;
  const delays = new Array(total).fill(null);
  let seen = 0;
  const allSeen = signal();
  const target = await makeSystem(opts, (payloads) => {
    const now = performance.now();
    for (const p of payloads) {
      if (delays[p.i] !== null) continue;
      delays[p.i] = now - p.t;
      if (++seen === total) allSeen.resolve();
    }
  });
  try {
    await target.start();
    // Give the worker time to connect and LISTEN before the first job.
    await sleep(1000);
    log(`sending ${total} jobs, one every ${opts.intervalMs} ms (${opts.warmup} warm-up)`);
    const begin = performance.now();
    for (let i = 0; i < total; i++) {
      const wait = begin + i * opts.intervalMs - performance.now();
      if (wait > 0) await sleep(wait);
      await target.enqueueOne({ i, t: performance.now() });
    }
    await allSeen.promise;
    const ms = delays.slice(opts.warmup).sort((a, b) => a - b);
    return {
      samples: ms.length,
      warmup: opts.warmup,
      interval_ms: opts.intervalMs,
      concurrency: opts.concurrency,
      p50_ms: round(percentile(ms, 0.5), 2),
      p99_ms: round(percentile(ms, 0.99), 2),
      mean_ms: round(ms.reduce((a, b) => a + b, 0) / ms.length, 2),
      max_ms: round(ms[ms.length - 1], 2),
      options: target.options,
    };
  } finally {
    await target.stop();
  }
}

// Returns the nearest-rank percentile of an ascending array.
function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

function round(x, places) {
  const factor = 10 ** places;
  return Math.round(x * factor) / factor;
}

function makeSystem(opts, handler) {
  return opts.system === 'pgboss' ? pgboss(opts, handler) : graphile(opts, handler);
}

const SYSTEM_NAMES = { graphile: 'graphile-worker', 'graphile-default': 'graphile-worker-default', pgboss: 'pg-boss' };

async function main() {
  const opts = parseOptions();
  const timer = setTimeout(() => {
    log(`timed out after ${opts.timeoutS} s (${opts.system} ${opts.mode}); giving up`);
    process.exit(3);
  }, opts.timeoutS * 1000);
  timer.unref();

  const result = opts.mode === 'drain' ? await drain(opts) : await latency(opts);
  const version = (name) =>
    JSON.parse(readFileSync(path.join(opts.peersDir, 'node_modules', name, 'package.json'), 'utf8')).version;
  const pkg = opts.system === 'pgboss' ? 'pg-boss' : 'graphile-worker';
  process.stdout.write(JSON.stringify({
    system: SYSTEM_NAMES[opts.system],
    mode: opts.mode,
    ...result,
    version: version(pkg),
    node: process.version,
  }) + '\n');
}

main().then(
  () => process.exit(0),
  (err) => {
    log(err?.stack ?? String(err));
    process.exit(1);
  },
);
