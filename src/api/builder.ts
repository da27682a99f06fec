import SchemaBuilder from '@pothos/core';
import ValidationPlugin from '@pothos/plugin-validation';
import { InvalidInputError } from '../errors.ts';
import type { ApiContext } from './context.ts';

type PathSegment = PropertyKey | { readonly key: PropertyKey };

export const builder = new SchemaBuilder<{
  Context: ApiContext;
  DefaultFieldNullability: false;
  Scalars: { ID: { Input: string; Output: string } };
}>({
  plugins: [ValidationPlugin],
  defaultFieldNullability: false,
  validation: {
    // Zod's messages are written for people; keep them, with the argument path they belong to.
    validationError: (failure) =>
      new InvalidInputError(
        failure.issues.map((issue) => ({
          path: (issue.path ?? []).map((segment: PathSegment) => {
            const key = typeof segment === 'object' ? segment.key : segment;
            return typeof key === 'number' ? key : String(key);
          }),
          message: issue.message,
        })),
      ),
  },
});
