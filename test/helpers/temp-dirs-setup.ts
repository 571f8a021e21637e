// Loaded by vitest before every test file (setupFiles): after the file's own afterAll hooks (vitest
// runs after-hooks in reverse order, so this one, registered first, runs last), the folders it
// made with tempDir() are removed, so a suite run leaves nothing in the system temp folder.
import { afterAll } from 'vitest';
import { removeTempDirs } from './cli.js';

afterAll(removeTempDirs);
