/**
 * sharp's bundled JavaScript (scripts/bundle-cli.ts, src/util/sharp-choice.ts):
 * camviz loads the build's bundle of it when that holds the installed
 * version, sharp's own files otherwise, and both decode alike.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import sharp from '../src/util/sharp.js';
import { SHARP_BUNDLE_PATH, type SharpModule, bundledSharp } from '../src/util/sharp-choice.js';
import { installedPackageVersion } from '../src/util/package-version.js';

const require = createRequire(import.meta.url);
const workDir = await mkdtemp(join(tmpdir(), 'camviz-sharp-choice-'));
after(() => rm(workDir, { recursive: true, force: true }));

const entry = require.resolve('sharp');
const version = installedPackageVersion(entry, 'sharp');
const installed = version === undefined ? undefined : { entry, version };
const packageSharp = require('sharp') as SharpModule;

test('the build bundles the installed sharp, and camviz loads that bundle, not sharp\'s own files', () => {
  const bundle = require(SHARP_BUNDLE_PATH) as { version: string; load(installedEntry: string): SharpModule };
  assert.ok(installed !== undefined);
  assert.equal(bundle.version, installed.version, 'the bundle holds another sharp: run `npm run build`');
  assert.equal(sharp, bundle.load(installed.entry));
  assert.notEqual(sharp, packageSharp);
  assert.equal(sharp.versions.sharp, installed.version);
  // The native part is the one binary: both copies report the same libvips.
  assert.equal(sharp.versions.vips, packageSharp.versions.vips);
});

test('the bundled sharp decodes and encodes as sharp\'s own files do', async () => {
  const width = 5;
  const height = 3;
  const pixels = Buffer.alloc(width * height * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 37) % 256;
  const raw = { raw: { width, height, channels: 3 as const } };
  const [viaBundle, viaPackage] = await Promise.all([sharp(pixels, raw).png().toBuffer(), packageSharp(pixels, raw).png().toBuffer()]);
  assert.deepEqual(viaBundle, viaPackage);
  const decoded = await sharp(viaPackage).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([decoded.info.width, decoded.info.height, decoded.info.channels], [width, height, 3]);
  assert.deepEqual(decoded.data, pixels);
});

test('a bundle of another version, a missing one, a damaged one, one that fails to load and one that loads no function are all passed over', async () => {
  assert.ok(installed !== undefined);
  assert.equal(bundledSharp(SHARP_BUNDLE_PATH, { ...installed, version: '0.0.1' }), undefined);
  assert.equal(bundledSharp(SHARP_BUNDLE_PATH, undefined), undefined);
  assert.equal(bundledSharp(join(workDir, 'absent.cjs'), installed), undefined);
  const damaged = join(workDir, 'damaged.cjs');
  await writeFile(damaged, 'exports.version = ');
  assert.equal(bundledSharp(damaged, installed), undefined);
  const failing = join(workDir, 'failing.cjs');
  await writeFile(failing, `exports.version = ${JSON.stringify(installed.version)};\nexports.load = () => { throw new Error('no binary here'); };\n`);
  assert.equal(bundledSharp(failing, installed), undefined);
  const notSharp = join(workDir, 'not-sharp.cjs');
  await writeFile(notSharp, `exports.version = ${JSON.stringify(installed.version)};\nexports.load = () => 'no sharp';\n`);
  assert.equal(bundledSharp(notSharp, installed), undefined);
  const fitting = join(workDir, 'fitting.cjs');
  await writeFile(fitting, `exports.version = ${JSON.stringify(installed.version)};\nexports.load = (entry) => Object.assign(() => undefined, { entry });\n`);
  assert.equal((bundledSharp(fitting, installed) as unknown as { entry: string }).entry, installed.entry, 'the loader is given the installed sharp\'s entry');
});

test('the bundle requires sharp\'s native parts from the installed sharp\'s folder, not its own', async () => {
  assert.ok(installed !== undefined);
  // A fresh copy of the bundle (this process has loaded the build's) beside it, from where the binary installed with camviz
  // is found; given an entry file in a folder with no sharp binary above it, it fails to load.
  const copy = join(dirname(SHARP_BUNDLE_PATH), `sharp-bundle.${process.pid}.test.cjs`);
  await copyFile(SHARP_BUNDLE_PATH, copy);
  try {
    const elsewhere = join(workDir, 'elsewhere', 'node_modules', 'sharp', 'dist');
    await mkdir(elsewhere, { recursive: true });
    const bundle = require(copy) as { load(installedEntry: string): unknown };
    assert.throws(() => bundle.load(join(elsewhere, 'index.cjs')), /sharp/);
  } finally {
    await rm(copy, { force: true });
  }
});

test('a package\'s version is read from the nearest package.json above a module that names it', async () => {
  const root = join(workDir, 'packages', 'node_modules', 'pkg');
  await mkdir(join(root, 'dist', 'cjs'), { recursive: true });
  await writeFile(join(root, 'package.json'), JSON.stringify({ name: 'pkg', version: '1.2.3' }));
  // A nameless package.json (a "type" marker, as packages put in their dist folders) is stepped over.
  await writeFile(join(root, 'dist', 'cjs', 'package.json'), JSON.stringify({ type: 'commonjs' }));
  await writeFile(join(root, 'dist', 'cjs', 'index.js'), '');
  assert.equal(installedPackageVersion(join(root, 'dist', 'cjs', 'index.js'), 'pkg'), '1.2.3');
  assert.equal(installedPackageVersion(join(root, 'dist', 'cjs', 'index.js'), 'other'), undefined);
  await writeFile(join(root, 'dist', 'package.json'), '{ not json');
  assert.equal(installedPackageVersion(join(root, 'dist', 'cjs', 'index.js'), 'pkg'), '1.2.3');
});
