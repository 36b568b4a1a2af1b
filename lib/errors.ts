/**
 * Typed errors. Every error ncf-native throws is an NcfError with a stable `code`; subclasses add
 * what the user needs to fix the problem (the file and line of a parse error, the option name of
 * a bad argument).
 */

export type NcfErrorCode =
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_PARSE'
  | 'ERR_EMPTY_DATA'
  | 'ERR_IO'
  | 'ERR_BACKEND'
  | 'ERR_UNAVAILABLE'
  | 'ERR_DISTRIBUTED'
  | 'ERR_DOWNLOAD'
  | 'ERR_CHECKSUM'
  | 'ERR_CHECKPOINT'
  | 'ERR_DATASET'
  | 'ERR_NATIVE';

export class NcfError extends Error {
  readonly code: NcfErrorCode;
  constructor(code: NcfErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NcfError';
    this.code = code;
  }
}

/** A function argument, option or CLI flag has a value it cannot take. */
export class InvalidArgumentError extends NcfError {
  readonly option?: string;
  constructor(message: string, option?: string) {
    super('ERR_INVALID_ARGUMENT', message);
    this.name = 'InvalidArgumentError';
    this.option = option;
  }
}

/** A line of an input file could not be read. */
export class ParseError extends NcfError {
  readonly file: string;
  readonly line?: number;
  constructor(file: string, message: string, line?: number) {
    super('ERR_PARSE', line !== undefined ? `${file}:${line}: ${message}` : `${file}: ${message}`);
    this.name = 'ParseError';
    this.file = file;
    this.line = line;
  }
}

/** The data cannot be trained on (empty, damaged cache, mismatched dataset). */
export class DataError extends NcfError {
  constructor(code: 'ERR_EMPTY_DATA' | 'ERR_DATASET' | 'ERR_IO', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'DataError';
  }
}

/** A download failed: network error, HTTP status or a truncated transfer. */
export class DownloadError extends NcfError {
  readonly url: string;
  constructor(url: string, message: string, options?: { cause?: unknown }) {
    super('ERR_DOWNLOAD', message, options);
    this.name = 'DownloadError';
    this.url = url;
  }
}

/** A file's checksum differs from the published one. */
export class ChecksumError extends NcfError {
  readonly expected: string;
  readonly actual: string;
  constructor(message: string, expected: string, actual: string) {
    super('ERR_CHECKSUM', message);
    this.name = 'ChecksumError';
    this.expected = expected;
    this.actual = actual;
  }
}

/** A checkpoint file is missing, damaged or does not fit the model. */
export class CheckpointError extends NcfError {
  readonly file: string;
  constructor(file: string, message: string) {
    super('ERR_CHECKPOINT', `${file}: ${message}`);
    this.name = 'CheckpointError';
    this.file = file;
  }
}

/** A compute backend, MPI or NCCL is missing from the build or failed. */
export class BackendError extends NcfError {
  constructor(code: 'ERR_BACKEND' | 'ERR_UNAVAILABLE' | 'ERR_DISTRIBUTED', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'BackendError';
  }
}

/**
 * Converts an error thrown by the native addon (an Error with `code` and maybe `line`) into the
 * matching typed error; `file` names the input when the native code parsed one.
 */
export function fromNative(err: unknown, file?: string): Error {
  if (err instanceof NcfError || !(err instanceof Error)) return err as Error;
  const e = err as Error & { code?: string; line?: number };
  const message = e.message;
  switch (e.code) {
    case 'ERR_PARSE':
      return new ParseError(file ?? 'input', message.replace(/^line \d+: /, ''), e.line);
    case 'ERR_INVALID_ARGUMENT':
      return new InvalidArgumentError(message);
    case 'ERR_EMPTY_DATA':
      return new DataError('ERR_EMPTY_DATA', file ? `${file}: ${message}` : message);
    case 'ERR_IO':
      return new DataError('ERR_IO', message);
    case 'ERR_UNAVAILABLE':
      return new BackendError('ERR_UNAVAILABLE', message);
    case 'ERR_DISTRIBUTED':
      return new BackendError('ERR_DISTRIBUTED', message);
    case 'ERR_BACKEND':
      return new BackendError('ERR_BACKEND', message);
    default:
      return new NcfError('ERR_NATIVE', message, { cause: err });
  }
}
