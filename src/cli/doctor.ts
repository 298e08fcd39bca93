/**
 * `camviz doctor`: what this machine offers. Native packages are probed in
 * child processes, since one process may hold only one of them.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import * as tf from '../engine/tf.js';
import { isNotInstalled, useBackend } from '../engine/backend.js';
import { describeError } from '../util/errors.js';
import { requireSharp } from '../util/sharp-choice.js';
import { ORT_INSTALL_HINT } from '../model/engine.js';
import { printJson } from './common.js';

type Status = 'loaded' | 'not installed' | 'failed';

interface BackendReport {
  backend: 'gpu' | 'native' | 'wasm' | 'cpu';
  package: string;
  status: Status;
  detail?: string;
}

/** ONNX Runtime, the optional native engine (--engine). */
interface OnnxRuntimeReport {
  package: string;
  status: Status;
  version?: string;
  /** The execution providers the package lists; `bundled: false` ones need provider libraries installed apart. */
  providers?: { name: string; bundled: boolean }[];
  /** Why it is absent or broken. */
  detail?: string;
}

interface DoctorReport {
  versions: Record<string, string | null>;
  backends: BackendReport[];
  onnxruntime: OnnxRuntimeReport;
  wasm: { simd: boolean | null; threads: number | null; multithreadSupported: boolean | null };
  auto: string | null;
}

const run = promisify(execFile);

async function probeNativeInChild(packageName: string, wantGpu: boolean): Promise<Omit<BackendReport, 'backend' | 'package'>> {
  // CommonJS (tfjs-node is): the command line's bundle holds no import() (src/util/import-module.cts).
  const script = `
    Promise.resolve().then(() => require(${JSON.stringify(packageName)})).then(async (tf) => {
      await tf.ready();
      const gpu = tf.backend().isUsingGpuDevice === true;
      console.log(JSON.stringify({ ok: true, gpu, backend: tf.getBackend() }));
    }, (e) => console.log(JSON.stringify({ ok: false, code: e.code, message: String(e.message) })));`;
  try {
    const { stdout } = await run(process.execPath, ['-e', script], { cwd: process.cwd(), timeout: 60_000 });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { ok: boolean; gpu?: boolean; code?: string; message?: string };
    if (result.ok) {
      if (wantGpu && !result.gpu) return { status: 'loaded', detail: 'no GPU device found: runs on the CPU (needs CUDA 11.2 + cuDNN 8)' };
      return { status: 'loaded', detail: result.gpu ? 'GPU device in use' : 'CPU' };
    }
    const error = Object.assign(new Error(result.message ?? 'unknown error'), { code: result.code });
    return isNotInstalled(error, packageName) ? { status: 'not installed' } : { status: 'failed', detail: describeError(error) };
  } catch (error) {
    return { status: 'failed', detail: describeError(error) };
  }
}

function packageVersion(name: string): string | null {
  try {
    const require = createRequire(import.meta.url);
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    return null;
  }
}

export async function collectDoctorReport(): Promise<DoctorReport> {
  const [gpu, native] = await Promise.all([
    probeNativeInChild('@tensorflow/tfjs-node-gpu', true),
    probeNativeInChild('@tensorflow/tfjs-node', false),
  ]);
  const backends: BackendReport[] = [
    { backend: 'gpu', package: '@tensorflow/tfjs-node-gpu', ...gpu },
    { backend: 'native', package: '@tensorflow/tfjs-node', ...native },
  ];
  let wasm: DoctorReport['wasm'] = { simd: null, threads: null, multithreadSupported: null };
  try {
    const info = await useBackend('wasm');
    wasm = { simd: info.simd ?? null, threads: info.threads ?? null, multithreadSupported: tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT') };
    backends.push({ backend: 'wasm', package: info.packageName, status: 'loaded', detail: `SIMD ${info.simd ? 'on' : 'off'}, ${info.threads} thread(s)` });
  } catch (error) {
    backends.push({ backend: 'wasm', package: '@tensorflow/tfjs-backend-wasm', status: 'failed', detail: describeError(error) });
  }
  try {
    await useBackend('cpu');
    backends.push({ backend: 'cpu', package: '@tensorflow/tfjs-backend-cpu', status: 'loaded', detail: 'pure JavaScript (slow)' });
  } catch (error) {
    backends.push({ backend: 'cpu', package: '@tensorflow/tfjs-backend-cpu', status: 'failed', detail: describeError(error) });
  }
  const auto = backends.find((report) => report.status === 'loaded')?.backend ?? null;
  return {
    onnxruntime: await probeOnnxRuntime(),
    versions: {
      node: process.versions.node,
      camviz: packageVersion('camviz') ?? null,
      '@tensorflow/tfjs-core': packageVersion('@tensorflow/tfjs-core'),
      '@tensorflow/tfjs-backend-wasm': packageVersion('@tensorflow/tfjs-backend-wasm'),
      ...(await sharpVersions()),
    },
    backends,
    wasm,
    auto,
  };
}

/** ONNX Runtime loads in this process: unlike the tfjs native packages it excludes nothing else. */
async function probeOnnxRuntime(): Promise<OnnxRuntimeReport> {
  const { loadOnnxRuntime, onnxRuntimeModule } = await import('../engine/onnxruntime.js');
  const ort = loadOnnxRuntime();
  const name = onnxRuntimeModule();
  if (!ort.available) return { package: name, status: ort.reason.endsWith('is not installed') ? 'not installed' : 'failed', detail: ort.reason };
  let providers: OnnxRuntimeReport['providers'];
  try {
    providers = listsProviders(ort.module) ? ort.module.listSupportedBackends().map(({ name: provider, bundled }) => ({ name: provider, bundled })) : undefined;
  } catch {
    providers = undefined;
  }
  return { package: name, status: 'loaded', version: ort.version, ...(providers === undefined ? {} : { providers }) };
}

/** onnxruntime-node's list of execution providers (1.17 and later; camviz's own declaration of ORT leaves it out, as only doctor reads it). */
interface ProviderLister {
  listSupportedBackends(): { name: string; bundled: boolean }[];
}

function listsProviders(module: object): module is ProviderLister {
  return typeof (module as Partial<ProviderLister>).listSupportedBackends === 'function';
}

/** doctor's ONNX Runtime line: what loads and what --engine auto does with it. */
function onnxRuntimeLine(report: OnnxRuntimeReport): string {
  if (report.status !== 'loaded') {
    return `onnxruntime: ${report.status}: ${report.detail ?? report.package}; --engine auto runs everything on tfjs (to add it: ${ORT_INSTALL_HINT})`;
  }
  const bundled = (report.providers ?? []).filter((provider) => provider.bundled).map((provider) => provider.name);
  const apart = (report.providers ?? []).filter((provider) => !provider.bundled).map((provider) => provider.name);
  const providers = `providers ${bundled.join(', ') || '?'}${apart.length > 0 ? ` (${apart.join(', ')}: need their own provider libraries)` : ''}`;
  return `onnxruntime: loaded ${report.package} ${report.version ?? ''}, ${providers}; camviz runs it on the CPU provider; --engine auto runs ONNX and TF.js models on it`;
}

async function sharpVersions(): Promise<{ sharp: string | null; libvips: string | null }> {
  try {
    const sharp = requireSharp();
    const versions = sharp.versions as { sharp?: string; vips?: string };
    return { sharp: versions.sharp ?? null, libvips: versions.vips ?? null };
  } catch {
    return { sharp: null, libvips: null };
  }
}

export async function runDoctor(options: { json?: boolean }): Promise<number> {
  const report = await collectDoctorReport();
  if (options.json) {
    printJson(report);
  } else {
    const lines = [
      'versions:',
      ...Object.entries(report.versions).map(([name, version]) => `  ${name.padEnd(30)} ${version ?? 'not found'}`),
      'backends:',
      ...report.backends.map(
        (entry) => `  ${entry.backend.padEnd(7)} ${entry.status.padEnd(14)} ${entry.package}${entry.detail ? `: ${entry.detail}` : ''}`,
      ),
      `wasm: SIMD ${report.wasm.simd ? 'yes' : 'no'}, threads ${report.wasm.threads ?? '?'} here; camviz starts the threaded build for single-process runs of 8 or more images (CAMVIZ_WASM_THREADS), and worker threads for folders (--jobs)`,
      `auto picks: ${report.auto ?? 'nothing works'}`,
      onnxRuntimeLine(report.onnxruntime),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return report.auto === null ? 1 : 0;
}
