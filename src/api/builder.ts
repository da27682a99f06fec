import SchemaBuilder from '@pothos/core';
import ValidationPlugin from '@pothos/plugin-validation';
import { valueFromASTUntyped } from 'graphql';
import type { JsonObject } from '../domain/model.ts';
import { InvalidInputError } from '../errors.ts';
import type { ApiContext } from './context.ts';

type PathSegment = PropertyKey | { readonly key: PropertyKey };

export const builder = new SchemaBuilder<{
  Context: ApiContext;
  DefaultFieldNullability: false;
  Scalars: {
    ID: { Input: string; Output: string };
    JSONObject: { Input: JsonObject; Output: JsonObject };
  };
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

/** The builder's type parameters, for helpers that take Pothos's field and argument builders. */
export type Types = typeof builder extends PothosSchemaTypes.SchemaBuilder<infer T> ? T : never;

const isObject = (value: unknown): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

builder.scalarType('JSONObject', {
  description: "A JSON object (Honcho's metadata and configuration), stored as given.",
  serialize: (value) => value,
  parseValue: (value) => {
    if (!isObject(value)) throw new TypeError('a JSONObject must be a JSON object');
    return value;
  },
  parseLiteral: (node) => {
    const value = valueFromASTUntyped(node);
    if (!isObject(value)) throw new TypeError('a JSONObject must be a JSON object');
    return value;
  },
});
