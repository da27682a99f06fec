import { parse, validate } from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema } from '../src/api/schema.ts';
import { GRAPHIQL_DEFAULT_QUERY } from '../src/server/graphiql.ts';

describe('the GraphiQL walkthrough', () => {
  it('is valid against the schema, and runs Watch before Chat as its steps say', () => {
    const document = parse(GRAPHIQL_DEFAULT_QUERY);
    expect(validate(schema, document)).toEqual([]);
    const names = document.definitions.map((d) => ('name' in d ? d.name?.value : undefined));
    expect(names.slice(0, 3)).toEqual(['Setup', 'Watch', 'Chat']);
    expect(GRAPHIQL_DEFAULT_QUERY).toContain('SECOND BROWSER TAB');
  });
});
