// Tiny, format-faithful data fixtures for the data-layer tests: a local mirror (coco-mini,
// flickr8k-mini, text-corpus), a Karpathy split file, a zip writer, and a loopback HTTP file server
// that can fail on purpose.
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import type { AddressInfo } from 'net';
import sharp from 'sharp';
import { crc32 } from '../../src/lib/data/zip';

const made: string[] = [];
process.on('exit', () => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

/** A fresh temporary directory, removed when the test process exits. */
export function tmpDir(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `clipcap-${prefix}-`));
  made.push(d);
  return d;
}

/** A fake repository root (artifactPaths(profile, root) writes under <root>/data). */
export function tmpRoot(): string {
  const root = tmpDir('root');
  fs.writeFileSync(path.join(root, 'package.json'), '{"name":"clipcap-ts-test"}\n');
  return root;
}

/** A small solid-colour JPEG. */
export async function jpeg(r: number, g: number, b: number, w = 16, h = 12): Promise<Buffer> {
  return sharp({ create: { width: w, height: h, channels: 3, background: { r, g, b } } }).jpeg().toBuffer();
}

export function cocoName(id: number): string {
  return `${String(id).padStart(12, '0')}.jpg`;
}

export interface FixtureMirror {
  root: string;
  cocoIds: { val: number[]; train: number[] };
  flickrWithPhoto: string[];
  flickrNoPhoto: string[];
}

/**
 * A mirror like ../shared/data, small: coco-mini with `val` val2017 and `train` train2017 photos (5
 * captions each), captions_val2017.json with those val photos plus 3 more, flickr8k-mini with
 * `flickr` photos plus 2 caption-only images, text-corpus with two Flickr30k files.
 */
/**
 * A local data mirror in the shared/data layout. Flickr8k split files: by default all photos but two
 * in train, two in dev, and the test photo has no file (the layout of flickr8k-mini); with
 * `testPhotos: t` the last t photos are test photos with files. `flickrDir: 'flickr8k'` writes the
 * full set's folder instead of flickr8k-mini/.
 */
export async function makeMirror(opts: { val?: number; train?: number; flickr?: number; testPhotos?: number; flickrDir?: 'flickr8k' | 'flickr8k-mini' } = {}): Promise<FixtureMirror> {
  const root = tmpDir('mirror');
  const nVal = opts.val ?? 8;
  const nTrain = opts.train ?? 4;
  const nFlickr = opts.flickr ?? 10;
  const cm = path.join(root, 'coco-mini');
  fs.mkdirSync(path.join(cm, 'images'), { recursive: true });
  const val = Array.from({ length: nVal }, (_, i) => 1000 + i * 7);
  const train = Array.from({ length: nTrain }, (_, i) => 500000 + i * 3);
  const images = [];
  for (const [ids, split] of [
    [val, 'val2017'],
    [train, 'train2017'],
  ] as [number[], string][]) {
    for (const id of ids) {
      fs.writeFileSync(path.join(cm, 'images', cocoName(id)), await jpeg(id % 255, 40, 90));
      images.push({
        image_id: id,
        file_name: cocoName(id),
        split,
        width: 16,
        height: 12,
        license: 4,
        captions: [0, 1, 2, 3, 4].map((k) => `coco ${id} caption ${k} `),
        coco_url: `http://images.cocodataset.org/${split}/${cocoName(id)}`,
      });
    }
  }
  fs.writeFileSync(path.join(cm, 'captions.json'), JSON.stringify({ licenses: [], images }));
  const extra = [9001, 9002, 9003];
  const v17imgs = [...val, ...extra].map((id) => ({ id, file_name: cocoName(id), height: 12, width: 16, license: 1 }));
  const anns: { image_id: number; id: number; caption: string }[] = [];
  let annId = 1;
  for (const id of val) for (let k = 0; k < 5; k++) anns.push({ image_id: id, id: annId++, caption: `coco ${id} caption ${k}` });
  for (const id of extra) for (let k = 0; k < 5; k++) anns.push({ image_id: id, id: annId++, caption: `val2017 extra ${id} says ${k}.` });
  fs.writeFileSync(path.join(cm, 'captions_val2017.json'), JSON.stringify({ info: {}, licenses: [], images: v17imgs, type: 'captions', annotations: anns }));

  const fk = path.join(root, opts.flickrDir ?? 'flickr8k-mini');
  fs.mkdirSync(path.join(fk, 'images'), { recursive: true });
  const withPhoto = Array.from({ length: nFlickr }, (_, i) => `${100000 + i}_abc${i}`);
  const noPhoto = ['999001_zz', '999002_zz'];
  const lines = ['image,caption'];
  for (const stem of [...withPhoto, ...noPhoto]) {
    for (let k = 0; k < 5; k++) lines.push(k === 1 ? `${stem}.jpg,"A dog , with a ""ball"" ${stem} ${k} ."` : `${stem}.jpg,A dog runs ${stem} ${k} .`);
  }
  fs.writeFileSync(path.join(fk, 'captions.txt'), lines.join('\n') + '\n');
  for (const stem of withPhoto) fs.writeFileSync(path.join(fk, 'images', `${stem}.jpg`), await jpeg(200, 100, 30));
  const t = opts.testPhotos ?? 0;
  const names = [...withPhoto.slice(0, nFlickr - t), ...noPhoto.slice(0, 1), ...withPhoto.slice(nFlickr - t), ...noPhoto.slice(1)].map((s) => `${s}.jpg`);
  // train: all but the last 4 + t names; dev: the next 2; test: the rest but the last, which is in no split
  fs.writeFileSync(path.join(fk, 'Flickr_8k.trainImages.txt'), names.slice(0, -4 - t).join('\n') + '\n');
  fs.writeFileSync(path.join(fk, 'Flickr_8k.devImages.txt'), names.slice(-4 - t, -2 - t).join('\n') + '\n');
  fs.writeFileSync(path.join(fk, 'Flickr_8k.testImages.txt'), names.slice(-2 - t, -1).join('\n') + '\n');

  const tc = path.join(root, 'text-corpus');
  fs.mkdirSync(tc, { recursive: true });
  fs.writeFileSync(path.join(tc, 'flickr30k_ann_test.json'), JSON.stringify({ '36979.jpg': { comments: ['A man rides a horse .', 'Someone on a horse .'] } }));
  fs.writeFileSync(path.join(tc, 'flickr30k_ann_val.json'), JSON.stringify({ '100000.jpg': { comments: ['A dog runs 100000_abc0 0 .', 'A cat sleeps .'] } }));
  return { root, cocoIds: { val, train }, flickrWithPhoto: withPhoto, flickrNoPhoto: noPhoto };
}

/** A Karpathy dataset_coco.json: `n` images per split (train, restval, val, test), `caps` captions each. */
export function karpathyCoco(counts: Record<'train' | 'restval' | 'val' | 'test', number>, caps = 5): object {
  const images: object[] = [];
  let imgid = 0;
  let cocoid = 100;
  for (const split of ['train', 'restval', 'val', 'test'] as const) {
    for (let i = 0; i < counts[split]; i++) {
      const folder = split === 'train' ? 'train2014' : 'val2014';
      const id = cocoid++;
      images.push({
        filepath: folder,
        filename: `COCO_${folder}_${String(id).padStart(12, '0')}.jpg`,
        imgid: imgid++,
        split,
        cocoid: id,
        sentids: [],
        sentences: Array.from({ length: caps + (id % 3 === 0 ? 1 : 0) }, (_, k) => ({ tokens: [], raw: `photo ${id} shows thing ${k}.`, imgid, sentid: k })),
      });
    }
  }
  return { dataset: 'coco', images };
}

/** A zip archive (stored or deflated entries), written without any zip tool. */
export function makeZip(entries: { name: string; data: Buffer | string; store?: boolean }[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const data = Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data);
    const comp = e.store ? data : zlib.deflateRawSync(data);
    const name = Buffer.from(e.name);
    const crc = crc32(data);
    const method = e.store ? 0 : 8;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(0, 6);
    lh.writeUInt16LE(method, 8);
    lh.writeUInt32LE(0, 10);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(comp.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    lh.writeUInt16LE(0, 28);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(0, 8);
    ch.writeUInt16LE(method, 10);
    ch.writeUInt32LE(0, 12);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(comp.length, 20);
    ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(offset, 42);
    locals.push(lh, name, comp);
    centrals.push(ch, name);
    offset += lh.length + name.length + comp.length;
  }
  const cd = Buffer.concat(centrals);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, eocd]);
}

/** How the file server misbehaves for one path. */
export interface Fault {
  /** Answer with this status for the first `times` requests (e.g. 500, 404). */
  status?: number;
  /** Send the headers with the full Content-Length, then only this many bytes, then cut (first `times` requests). */
  truncateAt?: number;
  /** Serve this body instead (e.g. an HTML page) with status 200. */
  body?: Buffer;
  times?: number;
}

export interface FileServer {
  url: string;
  /** Paths requested, in order (with " range=..." when a Range header came). */
  requests: string[];
  faults: Map<string, Fault>;
  files: Map<string, Buffer>;
  close: () => Promise<void>;
}

/** A loopback HTTP server (127.0.0.1) serving `files` by path, with Range support and faults. */
export async function startFileServer(files: Record<string, Buffer>): Promise<FileServer> {
  const map = new Map(Object.entries(files));
  const faults = new Map<string, Fault>();
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const p = decodeURIComponent((req.url ?? '/').split('?')[0]);
    const range = req.headers.range;
    requests.push(range ? `${p} range=${range}` : p);
    const fault = faults.get(p);
    if (fault && (fault.times ?? 1) > 0) {
      fault.times = (fault.times ?? 1) - 1;
      if (fault.status) {
        res.writeHead(fault.status, { 'content-type': 'text/plain' });
        res.end('failure on purpose');
        return;
      }
      if (fault.body) {
        res.writeHead(200, { 'content-length': String(fault.body.length), 'content-type': 'text/html' });
        res.end(fault.body);
        return;
      }
      if (fault.truncateAt !== undefined) {
        const data = map.get(p)!;
        res.writeHead(200, { 'content-length': String(data.length) });
        res.write(data.subarray(0, fault.truncateAt), () => res.socket?.destroy());
        return;
      }
    }
    const data = map.get(p);
    if (!data) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m) {
      const start = Number(m[1]);
      if (start >= data.length) {
        res.writeHead(416, { 'content-range': `bytes */${data.length}` });
        res.end();
        return;
      }
      res.writeHead(206, { 'content-length': String(data.length - start), 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` });
      res.end(data.subarray(start));
      return;
    }
    res.writeHead(200, { 'content-length': String(data.length) });
    res.end(data);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    faults,
    files: map,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** Every file under a directory (relative paths), for "nothing left behind" checks. */
export function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}
