import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['labextension/test/**/*.spec.ts'],
    environment: 'node'
  }
});
