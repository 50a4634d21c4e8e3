/**
 * Platforms: `os/arch[/variant]` strings and matching them against an index, with
 * containerd's normalisation (aarch64 → arm64, x86_64 → amd64, arm64's default
 * variant v8 is the same as none, armhf → arm/v7, ...).
 */
import { RootstockError } from "../errors.js";
import type { Descriptor, ImageIndex } from "./types.js";

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** containerd's normalisation (platforms/database.go), so equal platforms compare equal. */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  let arch = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() ?? "";
  switch (arch) {
    case "i386":
      arch = "386";
      variant = "";
      break;
    case "x86_64":
    case "x86-64":
    case "amd64":
      arch = "amd64";
      if (variant === "v1") variant = "";
      break;
    case "aarch64":
    case "arm64":
      arch = "arm64";
      if (variant === "8" || variant === "v8" || variant === "v8.0") variant = "";
      else if (variant === "9" || variant === "9.0" || variant === "v9.0") variant = "v9";
      break;
    case "armhf":
      arch = "arm";
      variant = "v7";
      break;
    case "armel":
      arch = "arm";
      variant = "v6";
      break;
    case "arm":
      if (variant === "" || variant === "7") variant = "v7";
      else if (variant === "5" || variant === "6" || variant === "8") variant = `v${variant}`;
      break;
  }
  return variant ? { os, architecture: arch, variant } : { os, architecture: arch };
}

const COMPONENT = /^[A-Za-z0-9_.-]+$/;

/** `linux/arm64/v8`, `linux/amd64`, `linux/arm/v7` → Platform (not normalised). */
export function parsePlatform(text: string): Platform {
  const parts = text.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !COMPONENT.test(p))) {
    throw new RootstockError(
      "INVALID_ARGUMENT",
      `platform ${JSON.stringify(text)}: expected OS/ARCH[/VARIANT], e.g. linux/arm64/v8`,
    );
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

export function platformMatches(candidate: Platform, wanted: Platform): boolean {
  const a = normalizePlatform(candidate);
  const b = normalizePlatform(wanted);
  return a.os === b.os && a.architecture === b.architecture && (a.variant ?? "") === (b.variant ?? "");
}

/** The index entries whose platform matches `wanted`, in index order. */
export function matchingManifests(index: ImageIndex, wanted: Platform): Descriptor[] {
  return index.manifests.filter((d) => d.platform !== undefined && platformMatches(d.platform, wanted));
}

/** The one manifest for `wanted`, or NOT_FOUND listing the platforms the index has. */
export function selectManifest(index: ImageIndex, wanted: Platform, what = "index"): Descriptor {
  const found = matchingManifests(index, wanted)[0];
  if (found) return found;
  const have = index.manifests.filter((d) => d.platform).map((d) => formatPlatform(d.platform!));
  throw new RootstockError(
    "NOT_FOUND",
    `${what}: no manifest for platform ${formatPlatform(wanted)}; available: ${have.length ? have.join(", ") : "none"}`,
  );
}

/** The platform of the running Node process, in OCI terms. */
export function hostPlatform(): Platform {
  const archMap: Record<string, Platform> = {
    x64: { os: "linux", architecture: "amd64" },
    arm64: { os: "linux", architecture: "arm64" },
    arm: { os: "linux", architecture: "arm", variant: "v7" },
    ia32: { os: "linux", architecture: "386" },
    riscv64: { os: "linux", architecture: "riscv64" },
    ppc64: { os: "linux", architecture: "ppc64le" },
    s390x: { os: "linux", architecture: "s390x" },
  };
  const p = archMap[process.arch] ?? { os: "linux", architecture: process.arch };
  return { ...p, os: process.platform === "linux" ? "linux" : process.platform };
}
