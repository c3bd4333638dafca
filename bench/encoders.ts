// Encoder throughput: images/s of the CenterNet stand-in (tfjs wasm) and of a ViT-B/32-shaped CLIP
// with random weights (transformers.js + onnxruntime-node), decoding included, with one and two
// worker processes. Each case runs extractEmbeddings on real photos (the local mirror's coco-mini,
// else generated 640x480 JPEGs) into a fresh temporary store.
//
//   npx tsx bench/encoders.ts [--images 64] [--only centernet|clip|clip-q8] [--workers 1,2]
//   npm run bench -- --only encoders           (through bench/index.ts)
//
// Reported: `steady images/s` = images / (wall time - model loading and worker start-up), the
// end-to-end rate with loading included, and the CPU time per image (all processes and threads,
// after loading), which other programs running on the machine disturb much less than wall time. The ViT-B/32 model (~350 MB fp32 + ~90 MB 8-bit) is
// generated on first use into data/bench/models/ (not committed). Results: bench/out/encoders.json.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import type { EncoderConfig } from '../src/lib/config';
import { tableText } from '../src/lib/notebook/display';
import { ensureRandomClip, VIT_B32_SPEC } from '../src/lib/embed/encoders/tiny-clip';
import { extractEmbeddings, type ExtractImage } from '../src/lib/embed/extract';
import { writeJsonAtomic } from '../src/lib/util/files';
import { mirrorDir, repoRoot } from '../src/lib/paths';

export interface EncoderBenchOptions {
  images: number;
  only?: string[];
  workers: number[];
}

export interface EncoderBenchRow {
  encoder: string;
  workers: number;
  images: number;
  'load s': number;
  'total s': number;
  'steady images/s': number;
  'end-to-end images/s': number;
  /** CPU time per image after loading, all processes and threads (robust to other load). */
  'CPU ms/image': number;
}

async function benchImages(n: number): Promise<{ images: ExtractImage[]; source: string }> {
  const mirror = mirrorDir();
  const coco = mirror ? path.join(mirror, 'coco-mini', 'images') : null;
  if (coco && fs.existsSync(coco)) {
    const files = fs.readdirSync(coco).filter((f) => /\.jpe?g$/i.test(f)).sort();
    const images: ExtractImage[] = [];
    for (let i = 0; i < n; i++) {
      const f = files[i % files.length];
      // the same photo may repeat under another id when n exceeds the folder
      images.push({ image_id: `${path.parse(f).name}#${Math.floor(i / files.length)}`, file: path.join(coco, f) });
    }
    return { images, source: `${coco} (COCO photos, ~640x480 JPEG)` };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-bench-img-'));
  const images: ExtractImage[] = [];
  for (let i = 0; i < n; i++) {
    const file = path.join(dir, `${i}.jpg`);
    const noise = Buffer.alloc(640 * 480 * 3);
    for (let k = 0; k < noise.length; k++) noise[k] = (k * 2654435761 + i * 97) >>> 24;
    await sharp(noise, { raw: { width: 640, height: 480, channels: 3 } }).jpeg({ quality: 85 }).toFile(file);
    images.push({ image_id: String(i), file });
  }
  return { images, source: 'generated 640x480 JPEGs (no local mirror)' };
}

export async function benchEncoders(opts: EncoderBenchOptions): Promise<{ rows: EncoderBenchRow[]; source: string }> {
  const models = path.join(repoRoot(), 'data', 'bench', 'models');
  const want = (k: string) => !opts.only || opts.only.includes(k);
  const cases: { key: string; label: string; cfg: EncoderConfig; images: number }[] = [];
  if (want('centernet')) {
    // the stand-in is ~10x slower: fewer photos keep the run short
    cases.push({ key: 'centernet', label: 'centernet (tfjs wasm)', cfg: { kind: 'centernet', modelId: 'centernet', quantized: false, batchSize: 4, workers: 1 }, images: Math.max(8, Math.round(opts.images / 3)) });
  }
  if (want('clip') || want('clip-q8')) {
    console.log('[bench] ViT-B/32-shaped random CLIP: generating (first run only) ...');
    await ensureRandomClip(path.join(models, 'random-clip-vit-b32'), VIT_B32_SPEC);
  }
  if (want('clip')) cases.push({ key: 'clip', label: 'CLIP ViT-B/32 fp32 (transformers.js)', cfg: { kind: 'clip', modelId: 'random-clip-vit-b32', quantized: false, batchSize: 16, workers: 1 }, images: opts.images });
  if (want('clip-q8')) cases.push({ key: 'clip-q8', label: 'CLIP ViT-B/32 8-bit (transformers.js)', cfg: { kind: 'clip', modelId: 'random-clip-vit-b32', quantized: true, batchSize: 16, workers: 1 }, images: opts.images });

  const maxImages = Math.max(...cases.map((c) => c.images), 1);
  const { images, source } = await benchImages(maxImages);
  const rows: EncoderBenchRow[] = [];
  for (const c of cases) {
    for (const workers of opts.workers) {
      const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-bench-store-'));
      try {
        const r = await extractEmbeddings({
          encoder: c.cfg,
          images: images.slice(0, c.images),
          storeDir,
          dataset: 'bench',
          workers,
          models,
          progress: false,
        });
        if (r.rejected) throw new Error(`${r.rejected} bench images were rejected`);
        const steady = r.seconds - r.loadSeconds;
        rows.push({
          encoder: c.label,
          workers,
          images: r.embedded,
          'load s': Number(r.loadSeconds.toFixed(1)),
          'total s': Number(r.seconds.toFixed(1)),
          'steady images/s': Number((r.embedded / steady).toFixed(1)),
          'end-to-end images/s': Number(r.imagesPerSecond.toFixed(1)),
          'CPU ms/image': Math.round((1000 * r.cpuSeconds) / r.embedded),
        });
        console.log(`[bench] ${c.label}, ${workers} worker(s): ${rows[rows.length - 1]['steady images/s']} images/s`);
      } finally {
        fs.rmSync(storeDir, { recursive: true, force: true });
      }
    }
  }
  return { rows, source };
}

function parseArgs(argv: string[]): EncoderBenchOptions {
  const o: EncoderBenchOptions = { images: 64, workers: [1, 2] };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--images') (o.images = Number(v)), i++;
    else if (k === '--only') (o.only = v.split(',')), i++;
    else if (k === '--workers') (o.workers = v.split(',').map(Number)), i++;
    else {
      // bench/index.ts passes the same arguments to every benchmark: skip the ones meant for others
      console.log(`[bench] encoders: ignoring ${k} (usage: bench/encoders.ts [--images N] [--only centernet,clip,clip-q8] [--workers 1,2])`);
      if (v !== undefined && !v.startsWith('--')) i++;
    }
  }
  if (!Number.isInteger(o.images) || o.images < 1) throw new Error('--images needs a positive integer');
  return o;
}

export async function run(argv: string[] = process.argv.slice(2)): Promise<number> {
  const opts = parseArgs(argv);
  const t0 = Date.now();
  const loadavgAtStart = os.loadavg();
  const { rows, source } = await benchEncoders(opts);
  const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}`;
  console.log(`\nEncoder throughput (decoding included) on ${machine}\nphotos: ${source}\n`);
  console.log(tableText(rows as unknown as Record<string, unknown>[]));
  const out = path.join(repoRoot(), 'bench', 'out', 'encoders.json');
  console.log(`load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (other programs share the cores)`);
  writeJsonAtomic(out, { date: new Date().toISOString(), machine, loadavgAtStart, loadavg: os.loadavg(), source, rows, seconds: (Date.now() - t0) / 1000 });
  console.log(`\n(written to ${path.relative(process.cwd(), out)})`);
  return 0;
}

if (require.main === module) {
  run().then(
    (code) => process.exit(code),
    (e) => {
      console.error(`[bench] ${(e as Error).message}`);
      process.exit(1);
    },
  );
}
