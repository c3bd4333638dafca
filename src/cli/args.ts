// A small, strict argument parser for the clipcap subcommands.
export interface ArgSpec {
  /** Options taking a value, e.g. { model: 'string', 'max-new-tokens': 'number' }. */
  values?: Record<string, 'string' | 'number'>;
  /** Boolean flags. */
  flags?: string[];
  usage: string;
}

export interface ParsedArgs {
  values: Record<string, string | number | undefined>;
  flags: Record<string, boolean>;
  positional: string[];
  help: boolean;
}

export function parseArgs(argv: string[], spec: ArgSpec): ParsedArgs {
  const out: ParsedArgs = { values: {}, flags: {}, positional: [], help: false };
  for (const f of spec.flags ?? []) out.flags[f] = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      out.help = true;
      continue;
    }
    if (!a.startsWith('--')) {
      out.positional.push(a);
      continue;
    }
    let key = a.slice(2);
    let inline: string | undefined;
    const eq = key.indexOf('=');
    if (eq >= 0) {
      inline = key.slice(eq + 1);
      key = key.slice(0, eq);
    }
    if (spec.flags?.includes(key)) {
      out.flags[key] = true;
      continue;
    }
    const kind = spec.values?.[key];
    if (!kind) throw new Error(`unknown option --${key}\n${spec.usage}`);
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new Error(`--${key} needs a value\n${spec.usage}`);
    if (kind === 'number') {
      const n = Number(raw);
      if (!Number.isFinite(n)) throw new Error(`--${key} must be a number, got "${raw}"`);
      out.values[key] = n;
    } else out.values[key] = raw;
  }
  return out;
}
