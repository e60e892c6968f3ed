// Minifies script.src.js into the two builds in dist/ and records the source's SHA-256 beside
// them, so a test can tell (without Node) when the committed builds no longer match the source.
//   dist/script.js        pageviews, SPA navigation, custom events, identity, opt-out
//   dist/script.links.js  the same plus outbound-link and file-download tracking
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { minify } from 'terser';

const source = readFileSync(new URL('./script.src.js', import.meta.url), 'utf8');
for (const [name, links] of [['script.js', false], ['script.links.js', true]]) {
  const result = await minify(source, {
    ecma: 2020,
    compress: { passes: 3, unsafe: true, unsafe_arrows: true, ecma: 2020, global_defs: { LINKS: links } },
    mangle: { toplevel: true },
    format: { comments: false, ecma: 2020 },
  });
  writeFileSync(new URL(`./dist/${name}`, import.meta.url), result.code);
  console.log(`dist/${name}: ${result.code.length} bytes`);
}
const digest = createHash('sha256').update(source).digest('hex');
writeFileSync(new URL('./dist/source-sha256', import.meta.url), digest + '\n');
