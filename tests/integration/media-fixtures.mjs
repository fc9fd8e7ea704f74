// media-fixtures.mjs - the media files the publishing tests upload, made fresh in a temp folder
// by the real tools (ImageMagick's convert, exiftool, GStreamer's gst-launch-1.0), and the
// helpers that look inside what the node hands back (JPEG dimensions, metadata, pixel colours).
//
// The files are built to make a wrong pipeline visible, not just to exist:
//   exif.jpg      400x300 as stored, left half red and right half blue, EXIF Orientation=6
//                 ("rotate 90 clockwise"), GPS position, camera make/model, an XMP creator and
//                 a comment.  Shown upright it is 300x400 with red on top: a pipeline that
//                 ignores the orientation keeps 400x300, one that turns the wrong way puts red
//                 at the bottom, one that keeps metadata leaves GPS tags in the variants.
//   large.jpg     4000x3000 (12 megapixels): medium 1080x810, original capped by
//                 media.original_max_side, thumbnail 320x320.
//   alpha.png     200x100 PNG with a transparent background.
//   photo.webp, photo.gif, photo.heic
//                 240x160 in the other image formats the node takes (HEIC: what phones send).
//   text.jpg      plain text named like a photo.
//   truncated.jpg the first half of a real JPEG.
//   bomb.png      a valid 20000x20000 PNG (400 megapixels) of a few tens of kilobytes: written
//                 here byte by byte because ImageMagick's policy refuses to make it.
//   video.mp4     2 s, 320x240, H.264 in MP4 (x264enc, mp4mux).
//   video.webm    2 s, 320x240, VP8 in WebM (vp8enc, webmmux).
//   tiny.jpg      16x16, the cheapest real image, for tests that need many posts.
//
// Every tool failure throws with the tool's own output, so a missing tool fails the tests
// instead of quietly testing less.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

function tool (cmd, args, { input } = {}) {
  const result = spawnSync(cmd, args, { encoding: 'utf8', input, maxBuffer: 64 * 1024 * 1024 });
  if (result.error) throw new Error(`${cmd} ${args.join(' ')}: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited with ${result.status}:\n${result.stdout}${result.stderr}`);
  }
  return result.stdout;
}

// ---------------------------------------------------------------------------------------------
// A PNG written by hand (the decompression bomb)

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32 (buffers) {
  let c = 0xffffffff;
  for (const buf of buffers) {
    for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk (type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const name = Buffer.from(type, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32([name, data]));
  return Buffer.concat([length, name, data, crc]);
}

// A white 1-bit greyscale PNG of width x height; rows of zeros deflate about 1000:1, so the
// file stays small while a decoder that believes its header allocates width*height pixels.
function bombPng (width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 1; // bit depth
  header[9] = 0; // greyscale
  const rowBytes = 1 + Math.ceil(width / 8); // filter byte + pixels
  const row = Buffer.alloc(rowBytes, 0xff);
  row[0] = 0;
  const deflate = zlib.createDeflate({ level: 9 });
  const parts = [];
  deflate.on('data', (c) => parts.push(c));
  // Feed the rows in blocks; deflateSync would need the 50 MB of raw rows in memory at once.
  const block = Buffer.concat(Array.from({ length: 256 }, () => row));
  const done = new Promise((resolve, reject) => {
    deflate.on('end', resolve);
    deflate.on('error', reject);
  });
  return (async () => {
    for (let y = 0; y < height; y += 256) {
      const rows = Math.min(256, height - y);
      const chunk = rows === 256 ? block : block.subarray(0, rows * rowBytes);
      if (!deflate.write(chunk)) await new Promise((resolve) => deflate.once('drain', resolve));
    }
    deflate.end();
    await done;
    return Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      pngChunk('IHDR', header),
      pngChunk('IDAT', Buffer.concat(parts)),
      pngChunk('IEND', Buffer.alloc(0)),
    ]);
  })();
}

// ---------------------------------------------------------------------------------------------
// Making the fixtures

// Writes every fixture into dir; returns {name: {path, bytes, contentType, ...}}.
export async function makeFixtures (dir) {
  const at = (name) => path.join(dir, name);

  // exif.jpg: red | blue side by side, then the metadata a phone would write.
  tool('convert', ['-size', '200x300', 'xc:red', '-size', '200x300', 'xc:blue', '+append',
                   '-quality', '92', at('exif.jpg')]);
  tool('exiftool', ['-q', '-overwrite_original', '-n', '-Orientation=6',
                    '-GPSLatitude=48.858370', '-GPSLatitudeRef=N',
                    '-GPSLongitude=2.294481', '-GPSLongitudeRef=E',
                    '-GPSAltitude=35', '-GPSAltitudeRef=0',
                    '-Make=GeneriaTestCam', '-Model=Fixture One',
                    '-XMP-dc:Creator=Fixture Photographer', '-Comment=secret comment',
                    at('exif.jpg')]);
  const exifTags = readTags(at('exif.jpg'));
  assert.equal(exifTags['EXIF:Orientation'], 6, 'fixture exif.jpg lacks Orientation=6');
  assert.ok(Object.keys(exifTags).some((k) => /GPSLatitude/.test(k)), 'fixture exif.jpg lacks GPS tags');
  assert.ok(Object.keys(exifTags).some((k) => k.startsWith('XMP')), 'fixture exif.jpg lacks XMP');

  tool('convert', ['-size', '4000x3000', 'gradient:orange-navy', '-quality', '90', at('large.jpg')]);
  tool('convert', ['-size', '200x100', 'xc:none', '-fill', 'red', '-draw', 'circle 100,50 100,10',
                   at('alpha.png')]);
  for (const ext of ['webp', 'gif', 'heic']) {
    tool('convert', ['-size', '240x160', 'gradient:green-yellow', at(`photo.${ext}`)]);
  }
  fs.writeFileSync(at('text.jpg'), 'This is not a photo.\nJust some text with a .jpg name.\n'.repeat(20));
  const large = fs.readFileSync(at('large.jpg'));
  fs.writeFileSync(at('truncated.jpg'), large.subarray(0, Math.floor(large.length / 2)));
  fs.writeFileSync(at('bomb.png'), await bombPng(20000, 20000));
  makeTinyJpeg(dir);

  const video = (name, encoder) => tool('gst-launch-1.0', [
    '-q', 'videotestsrc', 'num-buffers=60', '!',
    'video/x-raw,width=320,height=240,framerate=30/1', '!', ...encoder, '!',
    'filesink', `location=${at(name)}`]);
  video('video.webm', ['vp8enc', 'deadline=1', '!', 'webmmux']);
  video('video.mp4', ['x264enc', '!', 'mp4mux']);

  const fixture = (name, contentType, extra = {}) => {
    const bytes = fs.readFileSync(at(name));
    assert.ok(bytes.length > 0, `fixture ${name} is empty`);
    return { name, path: at(name), bytes, contentType, ...extra };
  };
  const fixtures = {
    exif: fixture('exif.jpg', 'image/jpeg', { width: 300, height: 400 }),
    large: fixture('large.jpg', 'image/jpeg', { width: 4000, height: 3000 }),
    alpha: fixture('alpha.png', 'image/png', { width: 200, height: 100 }),
    webp: fixture('photo.webp', 'image/webp', { width: 240, height: 160 }),
    gif: fixture('photo.gif', 'image/gif', { width: 240, height: 160 }),
    heic: fixture('photo.heic', 'image/heic', { width: 240, height: 160 }),
    text: fixture('text.jpg', 'image/jpeg'),
    truncated: fixture('truncated.jpg', 'image/jpeg'),
    bomb: fixture('bomb.png', 'image/png', { width: 20000, height: 20000 }),
    tiny: fixture('tiny.jpg', 'image/jpeg', { width: 16, height: 16 }),
    mp4: fixture('video.mp4', 'video/mp4', { width: 320, height: 240, durationMs: 2000 }),
    webm: fixture('video.webm', 'video/webm', { width: 320, height: 240, durationMs: 2000 }),
  };
  assert.ok(fixtures.bomb.bytes.length < 1024 * 1024,
            `bomb.png should be small on disk, is ${fixtures.bomb.bytes.length} bytes`);
  return fixtures;
}

// Only tiny.jpg (16x16, orange), for tests that need many cheap uploads; returns its fixture.
export function makeTinyJpeg (dir) {
  const file = path.join(dir, 'tiny.jpg');
  tool('convert', ['-size', '16x16', 'xc:orange', '-quality', '80', file]);
  return { name: 'tiny.jpg', path: file, bytes: fs.readFileSync(file), contentType: 'image/jpeg', width: 16, height: 16 };
}

// ---------------------------------------------------------------------------------------------
// Looking inside images

// Dimensions from a JPEG's SOF marker; throws if buf is not a JPEG.
export function jpegSize (buf) {
  assert.ok(buf.length > 4 && buf[0] === 0xff && buf[1] === 0xd8, 'not a JPEG (no SOI marker)');
  let i = 2;
  while (i + 9 < buf.length) {
    if (buf[i] !== 0xff) throw new Error(`JPEG marker expected at byte ${i}`);
    const marker = buf[i + 1];
    if (marker === 0xff) { i += 1; continue; }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) { i += 2; continue; }
    const length = buf.readUInt16BE(i + 2);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) return { width: buf.readUInt16BE(i + 7), height: buf.readUInt16BE(i + 5) };
    i += 2 + length;
  }
  throw new Error('JPEG has no SOF marker');
}

export function isJpeg (buf) {
  return buf.length > 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff;
}

// exiftool's view of a file, tags named "Group:Tag", numbers as numbers (-n).
export function readTags (file) {
  return JSON.parse(tool('exiftool', ['-j', '-G', '-n', file]))[0];
}

// The metadata tags that must not survive: location, orientation (already applied), camera,
// author, comments, and any EXIF/XMP/IPTC block at all.
export function leakedMetadata (tags) {
  return Object.keys(tags).filter((key) =>
    /GPS/i.test(key) || /:Orientation$/.test(key) || /:(Make|Model|Creator|Comment)$/.test(key) ||
    /^(EXIF|XMP[-\w]*|IPTC|MakerNotes|Photoshop):/.test(key));
}

// The colour at x,y as [r, g, b] 0..255.
export function pixelAt (file, x, y) {
  const text = tool('convert', [file, '-format',
    `%[fx:int(255*p{${x},${y}}.r+0.5)],%[fx:int(255*p{${x},${y}}.g+0.5)],%[fx:int(255*p{${x},${y}}.b+0.5)]`,
    'info:']);
  const rgb = text.trim().split(',').map(Number);
  assert.equal(rgb.length, 3, `unexpected pixel answer: ${text}`);
  return rgb;
}

// Roughly red / blue (JPEG moves colours a little).
export const isRed = ([r, g, b]) => r > 200 && g < 60 && b < 60;
export const isBlue = ([r, g, b]) => b > 200 && r < 60 && g < 60;
