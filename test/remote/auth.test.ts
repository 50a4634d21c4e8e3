import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import { authFilePaths, Credential, fileAuth, parseChallenges } from "../../src/remote/auth.js";
import { matchesInsecure, parseInsecureRegistries } from "../../src/remote/registries-conf.js";
import { withTempDir } from "../helpers/tmp.js";

describe("WWW-Authenticate", () => {
  it("parses bearer and basic challenges with quoted and bare parameters", () => {
    assert.deepEqual(
      parseChallenges(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope"',
      ),
      [
        {
          scheme: "bearer",
          params: {
            realm: "https://auth.example/token",
            service: "registry.example",
            scope: "repository:a/b:pull,push",
            error: "insufficient_scope",
          },
        },
      ],
    );
    assert.deepEqual(parseChallenges(['Basic realm="x"', "Bearer realm=https://t/,service=s"]), [
      { scheme: "basic", params: { realm: "x" } },
      { scheme: "bearer", params: { realm: "https://t/", service: "s" } },
    ]);
    assert.deepEqual(parseChallenges(undefined), []);
  });
});

describe("credentials", () => {
  it("never show their secret", () => {
    const c = new Credential("alice", "s3cret");
    assert.doesNotMatch(inspect(c), /s3cret/);
    assert.doesNotMatch(JSON.stringify({ c }), /s3cret/);
    assert.doesNotMatch(String(c), /s3cret/);
    assert.equal(c.basicHeader(), `Basic ${Buffer.from("alice:s3cret").toString("base64")}`);
  });

  it("come from auth files in containers/image's order, most specific key first", async () => {
    await withTempDir(async (dir) => {
      const runtime = join(dir, "run");
      const home = join(dir, "home");
      await mkdir(join(runtime, "containers"), { recursive: true });
      await mkdir(join(home, ".docker"), { recursive: true });
      const b64 = (s: string) => Buffer.from(s).toString("base64");
      await writeFile(
        join(runtime, "containers", "auth.json"),
        JSON.stringify({ auths: { "127.0.0.1:5000": { auth: b64("podman:one") } } }),
      );
      await writeFile(
        join(home, ".docker", "config.json"),
        JSON.stringify({
          auths: {
            "127.0.0.1:5000": { auth: b64("docker:two") },
            "https://127.0.0.1:6000/v1/": { auth: b64("docker:three") },
            "127.0.0.1:6000/team/app": { auth: b64("team:four") },
          },
        }),
      );
      const env = { HOME: home, XDG_RUNTIME_DIR: runtime };
      assert.deepEqual(authFilePaths(env), [
        join(runtime, "containers", "auth.json"),
        join(home, ".config", "containers", "auth.json"),
        join(home, ".docker", "config.json"),
      ]);
      const auth = fileAuth(env);
      assert.equal((await auth.credentialsFor("127.0.0.1:5000"))?.username, "podman");
      assert.equal((await auth.credentialsFor("127.0.0.1:6000"))?.username, "docker");
      assert.equal((await auth.credentialsFor("127.0.0.1:6000", "team/app"))?.username, "team");
      assert.equal(await auth.credentialsFor("127.0.0.1:7000"), undefined);

      const only = join(dir, "only.json");
      await writeFile(
        only,
        JSON.stringify({ auths: { "127.0.0.1:7000": { username: "u", password: "p" } } }),
      );
      const fromEnv = fileAuth({ ...env, REGISTRY_AUTH_FILE: only });
      assert.equal((await fromEnv.credentialsFor("127.0.0.1:7000"))?.username, "u");
      assert.equal(await fromEnv.credentialsFor("127.0.0.1:5000"), undefined);
    });
  });
});

describe("registries.conf", () => {
  it("reads insecure registries from v2 tables and the v1 list", () => {
    const text = `
unqualified-search-registries = ["docker.io"]

[[registry]]
location = "127.0.0.1:5000"
insecure = true

[[registry]]
location = "secure.example"
insecure = false

[[registry]]
prefix = "mirror.example/ns"  # a prefix
location = "other.example"
insecure = true

[registries.insecure]
registries = [
  "old.example:5000",
]
`;
    const insecure = parseInsecureRegistries(text);
    assert.deepEqual(insecure, ["127.0.0.1:5000", "mirror.example/ns", "old.example:5000"]);
    assert.equal(matchesInsecure(insecure, "127.0.0.1:5000"), true);
    assert.equal(matchesInsecure(insecure, "127.0.0.1:5001"), false);
    assert.equal(matchesInsecure(insecure, "secure.example"), false);
    assert.equal(matchesInsecure(insecure, "mirror.example", "ns/app"), true);
    assert.equal(matchesInsecure(insecure, "old.example:5000"), true);
  });
});
