import { parse, validate } from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema } from '../src/api/schema.ts';
import { GRAPHIQL_DEFAULT_QUERY } from '../src/server/graphiql.ts';

describe('the GraphiQL walkthrough', () => {
  it('its comment fits a narrow editor: no line is wider than 60 characters (it was cut mid-word)', () => {
    const comment = GRAPHIQL_DEFAULT_QUERY.split('\n').filter((line) => line.startsWith('#'));
    expect(comment.length).toBeGreaterThan(10);
    for (const line of comment) expect(line.length, line).toBeLessThanOrEqual(60);
  });

  it('is valid against the schema, and runs Watch before Chat as its steps say', () => {
    const document = parse(GRAPHIQL_DEFAULT_QUERY);
    expect(validate(schema, document)).toEqual([]);
    const names = document.definitions.map((d) => ('name' in d ? d.name?.value : undefined));
    expect(names.slice(0, 3)).toEqual(['Setup', 'Watch', 'Chat']);
    expect(GRAPHIQL_DEFAULT_QUERY).toContain('SECOND BROWSER TAB');
  });
});
