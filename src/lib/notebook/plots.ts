// Figures: vega-lite specs rendered headless to SVG (vega's own renderer) and PNG (sharp/librsvg).
import * as path from 'path';
import sharp from 'sharp';
import type { TopLevelSpec } from 'vega-lite';
import { writeFileAtomic } from '../util/files';

/** Render a vega-lite spec to an SVG string. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const vl = require('vega-lite') as typeof import('vega-lite');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const vega = require('vega') as typeof import('vega');
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterise an SVG to PNG at `scale` (2 = twice the SVG's pixel size), on a white background. */
export async function svgToPng(svg: string, scale = 2): Promise<Buffer> {
  return sharp(Buffer.from(svg), { density: 72 * scale }).flatten({ background: '#ffffff' }).png().toBuffer();
}

export interface SavedFigure {
  svgPath: string;
  pngPath: string;
  svg: string;
  png: Buffer;
}

/** Render a spec and save `<dir>/<name>.svg` and `<dir>/<name>.png` atomically. */
export async function saveFigure(spec: TopLevelSpec, dir: string, name: string): Promise<SavedFigure> {
  const svg = await renderSvg(spec);
  const png = await svgToPng(svg);
  const svgPath = path.join(dir, `${name}.svg`);
  const pngPath = path.join(dir, `${name}.png`);
  writeFileAtomic(svgPath, svg);
  writeFileAtomic(pngPath, png);
  return { svgPath, pngPath, svg, png };
}

/** Exponential moving average with bias correction (as TensorBoard's smoothing), for loss curves. */
export function smooth(values: number[], weight = 0.9): number[] {
  const out: number[] = [];
  let last = 0;
  let n = 0;
  for (const v of values) {
    last = last * weight + (1 - weight) * v;
    n += 1;
    out.push(last / (1 - Math.pow(weight, n)));
  }
  return out;
}

export interface StepLoss {
  variant: string;
  step: number;
  epoch: number;
  loss: number;
}

export interface EpochLoss {
  variant: string;
  epoch: number;
  /** 'val shuffled': the val loss with every caption conditioned on another photo (the image-use measure). */
  split: 'train' | 'val' | 'val shuffled';
  loss: number;
}

/**
 * The loss figure of the seed study: left, train loss per step (smoothed, raw faint) for each variant;
 * middle, train and validation loss per epoch; right (when measured), the validation loss with the
 * true images against shuffled ones: the gap is how much each variant uses the image.
 */
export function lossFigureSpec(steps: StepLoss[], epochs: EpochLoss[], opts: { smoothing?: number; title?: string } = {}): TopLevelSpec {
  const smoothing = opts.smoothing ?? 0.9;
  const byVariant = new Map<string, StepLoss[]>();
  for (const s of steps) {
    if (!byVariant.has(s.variant)) byVariant.set(s.variant, []);
    byVariant.get(s.variant)!.push(s);
  }
  const stepRows: Record<string, unknown>[] = [];
  for (const [variant, rows] of byVariant) {
    rows.sort((a, b) => a.step - b.step);
    const sm = smooth(
      rows.map((r) => r.loss),
      smoothing,
    );
    rows.forEach((r, i) => stepRows.push({ variant, step: r.step, loss: r.loss, smoothed: sm[i] }));
  }
  const color = { field: 'variant', type: 'nominal', title: 'variant', legend: { labelLimit: 320, symbolOpacity: 1, symbolType: 'stroke' } } as const;
  const epochAxis = { field: 'epoch', type: 'quantitative', axis: { tickMinStep: 1, format: 'd' } } as const;
  const shuffled = epochs.filter((e) => e.split === 'val shuffled');
  const gapPanel = shuffled.length
    ? [
        {
          title: 'val loss: true images (solid) vs shuffled (dotted)',
          width: 300,
          height: 260,
          data: { values: epochs.filter((e) => e.split !== 'train') as unknown as Record<string, unknown>[] },
          mark: { type: 'line', point: true },
          encoding: {
            x: epochAxis,
            y: { field: 'loss', type: 'quantitative', title: 'cross-entropy', scale: { zero: false } },
            color,
            strokeDash: { field: 'split', type: 'nominal', scale: { domain: ['val', 'val shuffled'], range: [[1, 0], [2, 3]] }, legend: null },
          },
        },
      ]
    : [];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: opts.title ?? 'ClipCap training loss',
    config: { font: 'sans-serif', view: { stroke: null } },
    hconcat: [
      {
        title: `train loss per step (EMA ${smoothing})`,
        width: 380,
        height: 260,
        data: { values: stepRows },
        layer: [
          {
            mark: { type: 'line', opacity: 0.2, strokeWidth: 1 },
            encoding: { x: { field: 'step', type: 'quantitative' }, y: { field: 'loss', type: 'quantitative', title: 'cross-entropy' }, color },
          },
          { mark: { type: 'line', strokeWidth: 2 }, encoding: { x: { field: 'step', type: 'quantitative' }, y: { field: 'smoothed', type: 'quantitative' }, color } },
        ],
      },
      {
        title: 'loss per epoch (solid: train, dashed: val)',
        width: 300,
        height: 260,
        data: { values: epochs.filter((e) => e.split !== 'val shuffled') as unknown as Record<string, unknown>[] },
        mark: { type: 'line', point: true },
        encoding: {
          x: epochAxis,
          y: { field: 'loss', type: 'quantitative', title: 'cross-entropy', scale: { zero: false } },
          color,
          strokeDash: { field: 'split', type: 'nominal', title: 'split', sort: ['train', 'val'], legend: null }, // the panel title says solid = train, dashed = val
        },
      },
      ...gapPanel,
    ],
    // each panel its own dash scale (train/val in the middle, true/shuffled on the right)
    resolve: { scale: { strokeDash: 'independent' } },
  } as TopLevelSpec;
}

/**
 * Bars of metrics (e.g. BLEU-4 and CIDEr) per system, one panel per metric; rows with `lo` and `hi` get
 * an interval whisker (e.g. a bootstrap 95% interval).
 */
export function metricsBarSpec(rows: { system: string; metric: string; value: number; lo?: number; hi?: number }[], title = 'Caption metrics'): TopLevelSpec {
  const x = { field: 'system', type: 'nominal', title: null, sort: null, axis: { labelAngle: -30, labelLimit: 400 } } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    config: { font: 'sans-serif', view: { stroke: null } },
    data: { values: rows },
    facet: { column: { field: 'metric', type: 'nominal', title: null } },
    spec: {
      width: 260,
      height: 220,
      layer: [
        {
          mark: 'bar',
          encoding: {
            x,
            y: { field: 'value', type: 'quantitative', title: null },
            color: { field: 'system', type: 'nominal', legend: null, sort: null },
          },
        },
        {
          transform: [{ filter: 'isValid(datum.lo) && isValid(datum.hi)' }],
          mark: { type: 'rule', color: 'black', strokeWidth: 1.5 },
          encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } },
        },
        {
          // the value above the bar, or above its whisker
          transform: [{ calculate: 'isValid(datum.hi) ? max(datum.hi, datum.value) : datum.value', as: 'labelY' }],
          mark: { type: 'text', dy: -7 },
          encoding: {
            x,
            y: { field: 'labelY', type: 'quantitative' },
            text: { field: 'value', type: 'quantitative', format: '.3f' },
          },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
  } as TopLevelSpec;
}
