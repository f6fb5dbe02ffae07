// The error types of the package (core.js, views.js and policy.js raise them).

/** Base class of the errors that a caller's input or files can cause. */
export class IrdeError extends Error {
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}
/** An argument is not valid; the message names the fix. */
export class InvalidInputError extends IrdeError {}
/** A router folder is incomplete, corrupt or of an unknown format version. */
export class RouterFormatError extends IrdeError {}
/** A file or folder that a router needs does not exist. */
export class FileNotFoundError extends IrdeError {
  constructor(message) {
    super(message);
    this.code = "ENOENT";
  }
}
