/**
 * A JSON-lines training log in the format of NVIDIA's DLLogger JSONStreamBackend, which the
 * reference writes to --log-path: one "DLLL {...}" line per record, with "type" METADATA or LOG,
 * a "step" (PARAMETER, [epoch] or [] for the summary) and "data". Lines are appended, so a
 * resumed run continues its log.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export class DLLogger {
  private readonly fd: number;
  private readonly t0 = Date.now();

  constructor(file: string) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.fd = fs.openSync(file, 'a');
  }

  private write(record: Record<string, unknown>): void {
    const now = new Date();
    const line = {
      timestamp: now.getTime() / 1000,
      datetime: now.toISOString(),
      elapsedtime: (now.getTime() - this.t0) / 1000,
      ...record,
    };
    fs.writeSync(this.fd, `DLLL ${JSON.stringify(line)}\n`);
  }

  metadata(metric: string, meta: Record<string, unknown>): void {
    this.write({ type: 'METADATA', metric, metadata: meta });
  }

  log(step: 'PARAMETER' | number[], data: Record<string, unknown>): void {
    this.write({ type: 'LOG', step, data });
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
