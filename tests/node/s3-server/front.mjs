// The payload-hash check in front of s3rver, shared by server.mjs (the unit tests' S3) and
// tests/integration/harness.mjs (startS3).
//
// s3rver does not compare x-amz-content-sha256 with the body it receives (the signature covers
// only the header's value), so a client that sends a wrong payload hash would pass every test
// and fail against AWS.  This front does what AWS does: it reads the whole body, refuses a hex
// hash that does not match it with 400 XAmzContentSHA256Mismatch before anything is stored,
// and passes every other request unchanged (Host included, which the signature covers) to
// s3rver.  UNSIGNED-PAYLOAD and the streaming form pass unchecked, as on AWS.
import { createHash } from 'node:crypto';
import http from 'node:http';

const HEX_SHA256 = /^[0-9a-f]{64}$/;

function mismatch (res, claimed, computed) {
  const body =
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>XAmzContentSHA256Mismatch</Code>' +
    "<Message>The provided 'x-amz-content-sha256' header does not match what was computed." +
    `</Message><ClientComputedContentSHA256>${claimed}</ClientComputedContentSHA256>` +
    `<S3ComputedContentSHA256>${computed}</S3ComputedContentSHA256></Error>`;
  res.writeHead(400, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

// An http.Server (not yet listening) forwarding to s3rver on 127.0.0.1:s3rverPort; onRequest
// (optional) sees every request and its response first.
export function createPayloadCheckingFront (s3rverPort, onRequest) {
  return http.createServer(async (req, res) => {
    onRequest?.(req, res);
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
}
