// A small writer for ONNX model files (protocol buffers, onnx.proto3), enough to build inference
// graphs from TypeScript: ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
// ValueInfoProto. There is no Python or ONNX tooling on the machines this project targets; this is
// how the tiny random CLIP vision model of the tests and the ViT-B/32-shaped benchmark model are made.
//
// Output is a list of byte chunks (large tensors are not copied), written with writeChunksAtomic.
// Field numbers follow https://github.com/onnx/onnx/blob/main/onnx/onnx.proto3.

/** TensorProto.DataType values used here. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
} as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

/** AttributeProto.AttributeType values. */
const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7, STRINGS: 8 } as const;

// ---------------------------------------------------------------------------------------------
// Protocol-buffer encoding

/** A protobuf message under construction: chunks of encoded fields. */
export class PbMessage {
  readonly chunks: Uint8Array[] = [];
  length = 0;

  private push(b: Uint8Array): void {
    if (b.byteLength === 0) return;
    this.chunks.push(b);
    this.length += b.byteLength;
  }

  private tag(field: number, wire: number): void {
    this.push(encodeVarint(BigInt(field * 8 + wire)));
  }

  /** int32/int64/uint64/enum/bool field (wire type 0). Negative values take 10 bytes, as protobuf says. */
  int(field: number, v: number | bigint): this {
    this.tag(field, 0);
    this.push(encodeVarint(toUint64(v)));
    return this;
  }

  /** float field (wire type 5). */
  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }

  /** bytes field (wire type 2); the bytes are not copied. */
  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.push(encodeVarint(BigInt(b.byteLength)));
    this.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  /** Embedded message field (wire type 2). */
  message(field: number, m: PbMessage): this {
    this.tag(field, 2);
    this.push(encodeVarint(BigInt(m.length)));
    for (const c of m.chunks) this.push(c);
    return this;
  }

  /** Packed repeated varints (wire type 2). */
  packedInts(field: number, vs: readonly (number | bigint)[]): this {
    const parts = vs.map((v) => encodeVarint(toUint64(v)));
    const len = parts.reduce((a, p) => a + p.byteLength, 0);
    this.tag(field, 2);
    this.push(encodeVarint(BigInt(len)));
    for (const p of parts) this.push(p);
    return this;
  }

  /** Packed repeated floats (wire type 2). */
  packedFloats(field: number, vs: readonly number[]): this {
    const b = new Uint8Array(4 * vs.length);
    const dv = new DataView(b.buffer);
    vs.forEach((v, i) => dv.setFloat32(4 * i, v, true));
    return this.bytes(field, b);
  }

  /** All bytes in one buffer (small messages and tests). */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.byteLength;
    }
    return out;
  }
}

function toUint64(v: number | bigint): bigint {
  const b = typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
  if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new Error(`varint ${v} is not a safe integer`);
  return b < 0n ? BigInt.asUintN(64, b) : b;
}

/** Base-128 varint of an unsigned 64-bit value. */
export function encodeVarint(v: bigint): Uint8Array {
  if (v < 0n) throw new Error('encodeVarint takes unsigned values');
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Uint8Array.from(out);
}

// ---------------------------------------------------------------------------------------------
// ONNX structures

export type TensorData = Float32Array | Uint8Array | Int8Array | Int32Array | BigInt64Array;

export interface TensorInit {
  name: string;
  dims: readonly number[];
  dataType: DataTypeCode;
  data: TensorData;
}

export type AttrValue =
  | { kind: 'int'; v: number }
  | { kind: 'float'; v: number }
  | { kind: 'ints'; v: readonly number[] }
  | { kind: 'floats'; v: readonly number[] }
  | { kind: 'string'; v: string }
  | { kind: 'tensor'; v: TensorInit };

export const attr = {
  int: (v: number): AttrValue => ({ kind: 'int', v }),
  float: (v: number): AttrValue => ({ kind: 'float', v }),
  ints: (v: readonly number[]): AttrValue => ({ kind: 'ints', v }),
  floats: (v: readonly number[]): AttrValue => ({ kind: 'floats', v }),
  string: (v: string): AttrValue => ({ kind: 'string', v }),
  tensor: (v: TensorInit): AttrValue => ({ kind: 'tensor', v }),
};

export interface NodeInit {
  opType: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  domain?: string;
  attrs?: Record<string, AttrValue>;
}

export interface ValueInfoInit {
  name: string;
  elemType: DataTypeCode;
  /** A number for a fixed dimension, a string for a symbolic one (e.g. 'batch_size'). */
  shape: readonly (number | string)[];
}

export interface GraphInit {
  name: string;
  nodes: readonly NodeInit[];
  initializers: readonly TensorInit[];
  inputs: readonly ValueInfoInit[];
  outputs: readonly ValueInfoInit[];
  doc?: string;
}

export interface ModelInit {
  graph: GraphInit;
  /** Default opset of the ai.onnx domain (17: LayerNormalization). */
  opset?: number;
  /** IR version (8 goes with opsets up to 18). */
  irVersion?: number;
  producerName?: string;
  producerVersion?: string;
  doc?: string;
  /** metadata_props key/values. */
  metadata?: Record<string, string>;
}

function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

const BYTES_PER: Record<DataTypeCode, number> = { 1: 4, 2: 1, 3: 1, 6: 4, 7: 8 };

export function tensorProto(t: TensorInit): PbMessage {
  const n = elementCount(t.dims);
  if (t.data.length !== n) throw new Error(`tensor ${t.name}: ${t.data.length} values for dims [${t.dims.join(',')}] (${n})`);
  if (t.data.BYTES_PER_ELEMENT !== BYTES_PER[t.dataType]) throw new Error(`tensor ${t.name}: data array does not match data type ${t.dataType}`);
  const m = new PbMessage();
  if (t.dims.length) m.packedInts(1, t.dims);
  m.int(2, t.dataType);
  m.string(8, t.name);
  // raw_data: little-endian bytes (this host is little-endian, as ONNX requires).
  m.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return m;
}

function attributeProto(name: string, a: AttrValue): PbMessage {
  const m = new PbMessage().string(1, name);
  switch (a.kind) {
    case 'int':
      m.int(3, a.v).int(20, AttrType.INT);
      break;
    case 'float':
      m.float(2, a.v).int(20, AttrType.FLOAT);
      break;
    case 'ints':
      m.packedInts(8, a.v).int(20, AttrType.INTS);
      break;
    case 'floats':
      m.packedFloats(7, a.v).int(20, AttrType.FLOATS);
      break;
    case 'string':
      m.string(4, a.v).int(20, AttrType.STRING);
      break;
    case 'tensor':
      m.message(5, tensorProto(a.v)).int(20, AttrType.TENSOR);
      break;
  }
  return m;
}

function nodeProto(n: NodeInit): PbMessage {
  const m = new PbMessage();
  for (const i of n.inputs) m.string(1, i);
  for (const o of n.outputs) m.string(2, o);
  if (n.name) m.string(3, n.name);
  m.string(4, n.opType);
  for (const [k, v] of Object.entries(n.attrs ?? {})) m.message(5, attributeProto(k, v));
  if (n.domain) m.string(7, n.domain);
  return m;
}

function valueInfoProto(v: ValueInfoInit): PbMessage {
  const shape = new PbMessage();
  for (const d of v.shape) {
    const dim = new PbMessage();
    if (typeof d === 'number') dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new PbMessage().int(1, v.elemType).message(2, shape);
  const type = new PbMessage().message(1, tensorType);
  return new PbMessage().string(1, v.name).message(2, type);
}

function graphProto(g: GraphInit): PbMessage {
  const m = new PbMessage();
  for (const n of g.nodes) m.message(1, nodeProto(n));
  m.string(2, g.name);
  for (const t of g.initializers) m.message(5, tensorProto(t));
  if (g.doc) m.string(10, g.doc);
  for (const i of g.inputs) m.message(11, valueInfoProto(i));
  for (const o of g.outputs) m.message(12, valueInfoProto(o));
  return m;
}

/** Encode a model; returns the message (write its `chunks`, or `toBytes()` for small ones). */
export function modelProto(init: ModelInit): PbMessage {
  checkGraph(init.graph);
  const m = new PbMessage();
  m.int(1, init.irVersion ?? 8);
  m.string(2, init.producerName ?? 'clipcap-ts');
  m.string(3, init.producerVersion ?? '0.1.0');
  if (init.doc) m.string(6, init.doc);
  m.message(7, graphProto(init.graph));
  m.message(8, new PbMessage().string(1, '').int(2, init.opset ?? 17));
  for (const [k, v] of Object.entries(init.metadata ?? {})) m.message(14, new PbMessage().string(1, k).string(2, v));
  return m;
}

/** Every node input is a graph input, an initializer or an earlier node's output; names are unique. */
export function checkGraph(g: GraphInit): void {
  const known = new Set<string>(['']);
  const define = (name: string, what: string) => {
    if (known.has(name)) throw new Error(`ONNX graph ${g.name}: ${what} ${name} is defined twice`);
    known.add(name);
  };
  for (const i of g.inputs) define(i.name, 'input');
  for (const t of g.initializers) define(t.name, 'initializer');
  for (const n of g.nodes) {
    for (const i of n.inputs) if (!known.has(i)) throw new Error(`ONNX graph ${g.name}: node ${n.name ?? n.opType} reads ${i} before it is defined`);
    for (const o of n.outputs) define(o, `output of ${n.opType}`);
  }
  for (const o of g.outputs) if (!known.has(o.name)) throw new Error(`ONNX graph ${g.name}: output ${o.name} is never computed`);
}

// ---------------------------------------------------------------------------------------------
// A graph builder with automatic names

export class GraphBuilder {
  readonly nodes: NodeInit[] = [];
  readonly initializers: TensorInit[] = [];
  private counter = 0;

  private fresh(base: string): string {
    this.counter += 1;
    return `${base}_${this.counter}`;
  }

  /** Add an initializer and return its name. */
  init(name: string, dims: readonly number[], data: TensorData, dataType?: DataTypeCode): string {
    const dt =
      dataType ??
      (data instanceof Float32Array ? DataType.FLOAT : data instanceof Int32Array ? DataType.INT32 : data instanceof BigInt64Array ? DataType.INT64 : data instanceof Int8Array ? DataType.INT8 : DataType.UINT8);
    this.initializers.push({ name, dims, dataType: dt, data });
    return name;
  }

  /** An int64 constant initializer (shapes, axes, indices). */
  int64(name: string, values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.init(this.fresh(name), dims, BigInt64Array.from(values.map((v) => BigInt(v))), DataType.INT64);
  }

  /** A float scalar constant. */
  scalar(name: string, v: number): string {
    return this.init(this.fresh(name), [], Float32Array.of(v), DataType.FLOAT);
  }

  /** Add a node with one output (named `out` or generated) and return the output name. */
  op(opType: string, inputs: readonly string[], attrs?: Record<string, AttrValue>, out?: string): string {
    const o = out ?? this.fresh(opType.toLowerCase());
    this.nodes.push({ opType, inputs, outputs: [o], name: this.fresh(`n_${opType}`), attrs });
    return o;
  }

  /** Add a node with several outputs. */
  opN(opType: string, inputs: readonly string[], nOut: number, attrs?: Record<string, AttrValue>): string[] {
    const outs = Array.from({ length: nOut }, () => this.fresh(opType.toLowerCase()));
    this.nodes.push({ opType, inputs, outputs: outs, name: this.fresh(`n_${opType}`), attrs });
    return outs;
  }

  graph(name: string, inputs: readonly ValueInfoInit[], outputs: readonly ValueInfoInit[], doc?: string): GraphInit {
    return { name, nodes: this.nodes, initializers: this.initializers, inputs, outputs, doc };
  }
}
