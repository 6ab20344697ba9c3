// Builds gotrace's page: src/main.js and its imports (the npm libraries included) bundled by
// esbuild, then the JS and CSS inlined into src/index.html, so the result is one file with no
// external URL that works from a server and as file:// (the offline report).
//
// usage: node build.mjs [OUT.html]   (default dist/page.html)
import { build } from 'esbuild';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] || join(here, 'dist/page.html');
const MARKER = '<!--gotrace-data-->';

const result = await build({
  entryPoints: [join(here, 'src/main.js')],
  bundle: true,
  minify: true,
  write: false,
  format: 'iife',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  outdir: join(here, 'dist/assets'),
  legalComments: 'eof',
  logLevel: 'warning',
});
const pick = (ext) => result.outputFiles.filter((f) => f.path.endsWith(ext)).map((f) => f.text).join('\n');
const js = pick('.js');
const css = pick('.css');

// Inlined text must not end its element early, nor carry a second data marker (the server
// inserts the data at the first one).
for (const [what, text, closer] of [['JS', js, '</script'], ['CSS', css, '</style']]) {
  if (text.toLowerCase().includes(closer)) throw new Error(`the bundled ${what} contains ${closer}`);
  if (text.includes(MARKER)) throw new Error(`the bundled ${what} contains the data marker`);
}
const template = readFileSync(join(here, 'src/index.html'), 'utf8');
if (template.split(MARKER).length !== 2 || template.indexOf(MARKER) > template.indexOf('</head>')) {
  throw new Error(`src/index.html must hold ${MARKER} exactly once, inside <head>`);
}
// Function replacements: a string one would read `$&` and the like in the bundle as patterns.
const html = template.replace('/*@css@*/', () => css).replace('/*@js@*/', () => js);
if (/\b(src|href)=["']?(https?:)?\/\//i.test(html)) throw new Error('page.html refers to an external URL');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, html);
console.log(`wrote ${out} (${html.length} bytes)`);
