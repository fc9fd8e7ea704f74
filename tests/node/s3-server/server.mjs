// A real S3 server for tests/node/test-storage.c: s3rver checks SigV4 signatures the way AWS
// does, so a request signed with the wrong secret is refused with SignatureDoesNotMatch.
//
//   node server.mjs DIRECTORY [PORT]
//
// Serves the bucket "generia" (objects kept under DIRECTORY) on 127.0.0.1, PORT 0 or absent
// picking a free port, and prints "port N" on stdout once it accepts connections.  The
// credentials are s3rver's built-in pair, access key S3RVER and secret S3RVER.  It exits when
// stdin closes, so a test that dies without killing it does not leave it running.
//
// s3rver does not compare x-amz-content-sha256 with the body it receives (the signature only
// covers the header's value), so a client that sends a wrong payload hash would pass every test
// and fail against AWS.  A small front on PORT does what AWS does: it reads the whole body,
// refuses a hex hash that does not match it with 400 XAmzContentSHA256Mismatch before anything
// is stored, and passes every other request unchanged (Host included, which the signature
// covers) to s3rver on a private port.  UNSIGNED-PAYLOAD and the streaming form pass unchecked,
// as on AWS.
import { createHash } from 'node:crypto';
import http from 'node:http';
import S3rver from '@20minutes/s3rver';

if (process.argv.length < 3) {
  console.error('usage: node server.mjs DIRECTORY [PORT]');
  process.exit(2);
}

const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  directory: process.argv[2],
  silent: true,
  configureBuckets: [{ name: 'generia' }],
});
const { port: s3rverPort } = await server.run();

const HEX_SHA256 = /^[0-9a-f]{64}$/;

function mismatch(res, claimed, computed) {
  const body =
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>XAmzContentSHA256Mismatch</Code>' +
    "<Message>The provided 'x-amz-content-sha256' header does not match what was computed." +
    `</Message><ClientComputedContentSHA256>${claimed}</ClientComputedContentSHA256>` +
    `<S3ComputedContentSHA256>${computed}</S3ComputedContentSHA256></Error>`;
  res.writeHead(400, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const front = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  const claimed = req.headers['x-amz-content-sha256'];
  if (typeof claimed === 'string' && HEX_SHA256.test(claimed)) {
    const computed = createHash('sha256').update(body).digest('hex');
    if (computed !== claimed) {
      mismatch(res, claimed, computed);
      return;
    }
  }
  const upstream = http.request(
    { host: '127.0.0.1', port: s3rverPort, method: req.method, path: req.url, headers: req.headers },
    (answer) => {
      res.writeHead(answer.statusCode, answer.rawHeaders);
      answer.pipe(res);
    },
  );
  upstream.on('error', (err) => {
    res.writeHead(502);
    res.end(String(err));
  });
  upstream.end(body);
});
await new Promise((resolve, reject) => {
  front.once('error', reject);
  front.listen(Number(process.argv[3] ?? 0), '127.0.0.1', resolve);
});
process.stdout.write(`port ${front.address().port}\n`);

const stop = () => {
  front.close();
  server.close().finally(() => process.exit(0));
};
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
