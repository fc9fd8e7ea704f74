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
// s3rver does not check payload hashes; the front of front.mjs on PORT does, as AWS does, and
// passes everything else to s3rver on a private port.
import S3rver from '@20minutes/s3rver';
import { createPayloadCheckingFront } from './front.mjs';

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

const front = createPayloadCheckingFront(s3rverPort);
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
