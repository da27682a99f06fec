import type { CodegenConfig } from '@graphql-codegen/cli';

/** Typed documents for the client and the tests, from the committed SDL. `npm run codegen`. */
const config: CodegenConfig = {
  schema: 'schema/schema.graphql',
  documents: ['src/client/operations.graphql'],
  ignoreNoDocuments: false,
  generates: {
    'src/client/generated/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        emitLegacyCommonJSImports: false,
        scalars: { ID: { input: 'string', output: 'string' } },
      },
    },
  },
};

export default config;
