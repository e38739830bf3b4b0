import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GenericContainer } from 'testcontainers';
import { z } from 'zod';
import { describeIssues, InvalidInput } from '@lockstep/topology';
import { ImageRef, imageDefaults } from '../imagetags.ts';

export { DEFAULT_IMAGE, DEFAULT_NATS_IMAGE, ImageEnv, ImageRef, imageDefaults, LOCAL_NODE_BASE } from '../imagetags.ts';

/** What `buildImages` builds. Every field is optional; a missing tag comes from the environment (`imageDefaults`). */
export const ImageOptions = z
  .object({
    /** Tag of the role image (every `pod`, `host` and `client` container); default $LOCKSTEP_IMAGE, else lockstep:dev. */
    image: ImageRef.optional(),
    /** Tag of the nats-server image; default $LOCKSTEP_NATS_IMAGE, else lockstep-nats:2.9.10. */
    natsImage: ImageRef.optional(),
    /** Tag of the Node base made from this machine's node (when no `base` is given); default $LOCKSTEP_NODE_IMAGE, else lockstep-node:20. */
    nodeImage: ImageRef.optional(),
    /**
     * The Node 20 image both are built on. Default: lockstep-node:20, made here
     * from this machine's `node` and the libraries `ldd` lists (no registry
     * needed; Linux only). With a registry, e.g. node:20-bookworm-slim (pulled).
     */
    base: ImageRef.optional(),
    /** The nats-server binary copied into its image: default `nats-server` on PATH, else /usr/sbin/nats-server (Debian: apt-get install -y nats-server). */
    natsServer: z.string().min(1).max(4096).optional(),
    /** The build context of the role image (a Dockerfile, nats.Dockerfile, healthcheck.js and app/); default the package's image/ directory. */
    context: z.string().min(1).max(4096).optional(),
  })
  .strict();
export type ImageOptions = z.input<typeof ImageOptions>;

/** Raised when an image cannot be built: which one, and why (a missing binary, the engine's message). */
export class ImageBuildFailed extends Error {
  override name = 'ImageBuildFailed';
  constructor(
    readonly image: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`could not build ${image}: ${reason}`, options);
  }
}

/** The package's image/ directory, beside the bundle (the sources have none: `node infra/build.mjs` makes it). */
function packagedContext(): string {
  return fileURLToPath(new URL('./image/', import.meta.url));
}

function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  return undefined;
}

/**
 * A root file system holding `node` and what it and the native addons under `modules` (the role image's npm
 * packages: @node-rs/crc32's `.node` links librt, which node does not) link against, at the same paths: enough to
 * run Node and those addons in a `FROM scratch` image.
 */
function nodeRoot(into: string, modules: string, tag: string): void {
  const node = process.execPath;
  const addons = existsSync(modules)
    ? (readdirSync(modules, { recursive: true }) as string[]).filter((f) => f.endsWith('.node')).map((f) => join(modules, f))
    : [];
  const root = join(into, 'root');
  for (const d of ['usr/bin', 'tmp', 'etc']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync(node, join(root, 'usr/bin/node'));
  chmodSync(join(root, 'usr/bin/node'), 0o755);
  let libs: string[];
  try {
    libs = [node, ...addons].flatMap((bin) =>
      [...execFileSync('ldd', [bin], { encoding: 'utf8', timeout: 10_000 }).matchAll(/(\/\S+)/g)].map((m) => m[1]),
    );
  } catch (cause) {
    throw new ImageBuildFailed(tag, `ldd ${node} failed (Linux only; pass base: 'node:20-bookworm-slim' where a registry is reachable)`, {
      cause,
    });
  }
  for (const lib of new Set(libs)) {
    mkdirSync(join(root, dirname(lib)), { recursive: true });
    copyFileSync(lib, join(root, lib));
  }
  chmodSync(join(root, 'tmp'), 0o1777);
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/nsswitch.conf'), 'hosts: files dns\n');
  writeFileSync(join(into, 'Dockerfile'), 'FROM scratch\nCOPY root/ /\nENV PATH=/usr/bin\nCMD ["/usr/bin/node"]\n');
}

async function build(context: string, dockerfile: string, tag: string, args: Record<string, string>): Promise<void> {
  try {
    await GenericContainer.fromDockerfile(context, dockerfile).withBuildArgs(args).build(tag, { deleteOnExit: false });
  } catch (cause) {
    throw new ImageBuildFailed(tag, (cause as Error).message.split('\n')[0], { cause });
  }
}

/**
 * Build the images a lockstep cluster runs, through the container engine
 * testcontainers finds, without pulling anything (unless `base` names a
 * registry's image): the Node base (default lockstep-node:20, this machine's
 * node), the nats-server image (Debian's binary on that base, with a Node TCP
 * health check) and the role image (the lockstep CLI's bundle on that base).
 * Resolves to the tags built, in that order. Throws InvalidInput for a bad
 * option and ImageBuildFailed naming the image that failed.
 *
 *   await buildImages();                                   // lockstep-node:20, lockstep-nats:2.9.10, lockstep:dev (or $LOCKSTEP_*_IMAGE)
 *   await buildImages({ base: 'node:20-bookworm-slim' });  // with a registry
 */
export async function buildImages(options: ImageOptions = {}): Promise<string[]> {
  const parsed = ImageOptions.safeParse(options);
  if (!parsed.success) throw new InvalidInput('image options', describeIssues(parsed.error));
  const env = imageDefaults();
  const o = { ...parsed.data, image: parsed.data.image ?? env.image, natsImage: parsed.data.natsImage ?? env.natsImage };
  const nodeImage = parsed.data.nodeImage ?? env.nodeImage;
  const context = o.context ?? packagedContext();
  for (const f of ['Dockerfile', 'nats.Dockerfile', 'healthcheck.js', 'app'])
    if (!existsSync(join(context, f)))
      throw new ImageBuildFailed(
        o.image,
        `${join(context, f)} is missing (in a checkout, node infra/build.mjs makes the package and its image/)`,
      );
  const natsServer = o.natsServer ?? which('nats-server') ?? '/usr/sbin/nats-server';
  if (!existsSync(natsServer))
    throw new ImageBuildFailed(
      o.natsImage,
      `no nats-server binary at ${natsServer} (Debian: apt-get install -y nats-server; or pass natsServer)`,
    );

  const work = mkdtempSync(join(tmpdir(), 'lockstep-images-'));
  try {
    const built: string[] = [];
    const base = o.base ?? nodeImage;
    if (!o.base) {
      const dir = join(work, 'node');
      mkdirSync(dir);
      nodeRoot(dir, join(context, 'app', 'modules'), nodeImage);
      await build(dir, 'Dockerfile', base, {});
      built.push(base);
    }
    const nats = join(work, 'nats');
    mkdirSync(nats);
    copyFileSync(natsServer, join(nats, 'nats-server'));
    chmodSync(join(nats, 'nats-server'), 0o755);
    copyFileSync(join(context, 'healthcheck.js'), join(nats, 'healthcheck.js'));
    copyFileSync(join(context, 'nats.Dockerfile'), join(nats, 'Dockerfile'));
    await build(nats, 'Dockerfile', o.natsImage, { BASE: base });
    built.push(o.natsImage);
    await build(context, 'Dockerfile', o.image, { BASE: base });
    built.push(o.image);
    return built;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
