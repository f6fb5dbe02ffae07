// The error types of the package (core.js, views.js and policy.js raise them). Each class sets
// its `name` as a string: a minifier renames classes, so constructor.name would not survive.

/** Base class of the errors that a caller's input or files can cause. */
export class IrdeError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "IrdeError";
  }
}
/** An argument is not valid; the message names the fix. */
export class InvalidInputError extends IrdeError {
  constructor(message, options) {
    super(message, options);
    this.name = "InvalidInputError";
  }
}
/** A router folder is incomplete, corrupt or of an unknown format version. */
export class RouterFormatError extends IrdeError {
  constructor(message, options) {
    super(message, options);
    this.name = "RouterFormatError";
  }
}
/** A file or folder that a router needs does not exist. */
export class FileNotFoundError extends IrdeError {
  constructor(message, options) {
    super(message, options);
    this.name = "FileNotFoundError";
    this.code = "ENOENT";
  }
}
/**
 * The onnxruntime package a back-end needs is not installed (they are optional peer
 * dependencies: onnxruntime-node for Node.js, onnxruntime-web for browsers and the wasm
 * back-end); the message names the install command.
 */
export class MissingBackendError extends IrdeError {
  constructor(message, options) {
    super(message, options);
    this.name = "MissingBackendError";
    this.code = "IRDE_MISSING_BACKEND";
  }
}
