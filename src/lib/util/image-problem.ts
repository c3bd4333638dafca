// Why an image file could not be decoded, in words a reader can act on (shared by the embedding
// stores' rejects, clipcap caption, and the check of a dataset's photos in data/custom.ts).

const IMAGE_MAGIC: [string, number[]][] = [
  ['PNG', [0x89, 0x50, 0x4e, 0x47]],
  ['GIF', [0x47, 0x49, 0x46, 0x38]],
  ['WebP', [0x52, 0x49, 0x46, 0x46]],
  ['BMP', [0x42, 0x4d]],
  ['TIFF', [0x49, 0x49, 0x2a, 0x00]],
  ['TIFF', [0x4d, 0x4d, 0x00, 0x2a]],
];

/**
 * Why an image file could not be decoded, in words a reader can act on: a JPEG that lacks its end
 * marker, or that the decoder calls premature, corrupt or an "Unknown error" (libvips' empty message,
 * seen when several decodes fail at once), is a "truncated or damaged JPEG"; an unknown error on a
 * file of another image format is a damaged file of that format, and on anything else not an image.
 * Other messages are kept as they are.
 */
export function decodeFailureReason(bytes: Uint8Array, message: string): string {
  const unknown = message.trim() === '' || /unknown error/i.test(message);
  const said = message.trim() ? ` (the decoder says: ${message.trim()})` : '';
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xd8) {
    let end = bytes.length;
    while (end > 2 && (bytes[end - 1] === 0x00 || bytes[end - 1] === 0x0a || bytes[end - 1] === 0x0d || bytes[end - 1] === 0x20)) end -= 1;
    const noEndMarker = !(bytes[end - 2] === 0xff && bytes[end - 1] === 0xd9);
    if (unknown || noEndMarker || /premature|truncat|corrupt|end of (file|input|stream)/i.test(message)) return `truncated or damaged JPEG${said}`;
    return message;
  }
  if (!unknown) return message;
  const format = IMAGE_MAGIC.find(([, m]) => m.every((b, i) => bytes[i] === b))?.[0];
  return format ? `damaged ${format} image${said}` : `not a readable image file${said}`;
}
