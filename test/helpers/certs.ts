/** Self-signed certificates for test servers, made with openssl. */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Writes `key.pem` and `cert.pem` (RSA 2048, self-signed, subject CN=`commonName`,
 * plus `subjectAltName` when given) into `dir`; returns their paths.
 */
export async function selfSignedCertificate(
  dir: string,
  commonName: string,
  subjectAltName?: string,
): Promise<{ keyPath: string; certPath: string }> {
  const keyPath = join(dir, "key.pem");
  const certPath = join(dir, "cert.pem");
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${commonName}`,
    ...(subjectAltName ? ["-addext", `subjectAltName=${subjectAltName}`] : []),
    "-keyout",
    keyPath,
    "-out",
    certPath,
  ]);
  return { keyPath, certPath };
}
