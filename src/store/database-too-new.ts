/** The database was written by a newer Deriver Live: its migrations are unknown to this code. */
export class DatabaseTooNewError extends Error {
  constructor(
    readonly databaseVersion: number,
    readonly codeVersion: number,
  ) {
    super(
      `the database is at schema version ${databaseVersion}, newer than this code knows (${codeVersion}); run the Deriver Live version that wrote it, or a newer one`,
    );
    this.name = 'DatabaseTooNewError';
  }
}
