export * from "./auth.js";
export * from "./client.js";
export * from "./errors.js";
export * from "./image-repository.js";
export { multipartBoundary, parseByteranges } from "./multipart.js";
export * from "./ranges.js";
export { isInsecureRegistry, parseInsecureRegistries } from "./registries-conf.js";
export * from "./repository.js";
