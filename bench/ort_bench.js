// ort_bench.js - time an ONNX model with ONNX Runtime (onnxruntime-node) for
// bench_precision.py: node ort_bench.js <module dir> <model.onnx> <threads> <batch> <seconds>
// Prints "speed <img/s> cpu <img per CPU-second x threads> rss <MB>".
const [modDir, model, threads, batch, seconds] = process.argv.slice(2);
const ort = require(modDir);

(async () => {
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: Number(threads),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const n = Number(batch);
  const data = new Float32Array(n * 3 * 112 * 112);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761) >>> 24) / 255;
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, [n, 3, 112, 112])};
  await session.run(feeds);
  await session.run(feeds); // warm-up
  const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
  let runs = 0, t = 0;
  do {
    await session.run(feeds);
    runs++;
    t = Number(process.hrtime.bigint() - t0) / 1e9;
  } while (t < Number(seconds) || runs < 3);
  const c = process.cpuUsage(c0), cpu = (c.user + c.system) / 1e6;
  const rss = process.resourceUsage().maxRSS / 1024;
  console.log(`speed ${(runs * n / t).toFixed(3)} cpu ${(runs * n / cpu * threads).toFixed(3)} ` +
              `rss ${rss.toFixed(0)}`);
})().catch((e) => { console.error(e.message); process.exit(1); });
