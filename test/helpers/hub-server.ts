// A loopback HTTP server that serves model repositories in the Hugging Face hub URL layout:
// GET /<owner>/<name>/resolve/<revision>/<file>  ->  <root>/<owner>/<name>/<file>
// Used to test the real hub code paths (transformers.js getModelFile, our cache) without a network.
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import type { AddressInfo } from 'net';

export interface HubServer {
  url: string;
  requests: string[];
  close: () => Promise<void>;
}

export async function startHubServer(root: string): Promise<HubServer> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const u = decodeURIComponent((req.url ?? '/').split('?')[0]);
    requests.push(u);
    const m = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(u);
    const file = m ? path.resolve(root, m[1], m[3]) : null;
    if (!file || !file.startsWith(path.resolve(root) + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('Entry not found');
      return;
    }
    const data = fs.readFileSync(file);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(data.byteLength) });
    res.end(req.method === 'HEAD' ? undefined : data);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
