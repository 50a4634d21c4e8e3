"""Independent oracle for the tar tests: Python's tarfile.

  pytar.py list ARCHIVE        -> one JSON object per member (names and xattr values as hex)
  pytar.py create FORMAT SRC OUT  -> archive of SRC ('.' as root) in gnu|pax|ustar format,
                                  pax also carrying each file's xattrs as SCHILY.xattr records
  pytar.py stat DIR             -> JSON map: relative path -> what the file system holds
  pytar.py extract ARCHIVE DIR -> tarfile.extractall (numeric owners, no xattrs)
  pytar.py global OUT          -> a PAX archive with a global header
  pytar.py mktree DIR full|ustar  -> a source tree with every entry kind (devices only as root);
                                  "ustar" leaves out what ustar cannot hold
"""
import json
import os
import sys
import tarfile


def hexs(s):
    return s.encode("utf-8", "surrogateescape").hex()


def kind(m):
    if m.isreg():
        return "file"
    if m.islnk():
        return "hardlink"
    if m.issym():
        return "symlink"
    if m.ischr():
        return "char"
    if m.isblk():
        return "block"
    if m.isdir():
        return "dir"
    if m.isfifo():
        return "fifo"
    return "other"


def list_members(path):
    with tarfile.open(path, "r:") as tf:
        for m in tf:
            xattrs = {
                k[len("SCHILY.xattr."):]: hexs(v)
                for k, v in m.pax_headers.items()
                if k.startswith("SCHILY.xattr.")
            }
            print(json.dumps({
                "name": hexs(m.name),
                "linkname": hexs(m.linkname),
                "type": kind(m),
                "size": m.size,
                "mode": m.mode,
                "uid": m.uid,
                "gid": m.gid,
                "mtime": m.mtime,
                "devmajor": m.devmajor,
                "devminor": m.devminor,
                "xattrs": xattrs,
            }))


def create(fmt, src, out):
    format = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT, "ustar": tarfile.USTAR_FORMAT}[fmt]

    def with_xattrs(ti):
        if fmt == "pax":
            path = os.path.join(src, ti.name)
            for key in sorted(os.listxattr(path, follow_symlinks=False)):
                value = os.getxattr(path, key, follow_symlinks=False)
                ti.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
        return ti

    with tarfile.open(out, "w", format=format) as tf:
        tf.add(src, arcname=".", filter=with_xattrs)


def global_header(out):
    import io
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "global"}) as tf:
        ti = tarfile.TarInfo("after-global.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"abc"))


BINARY_XATTR = bytes([0, 255, 10, 61, 32, 0xC3, 0x28, 1, 2, 3])


def mktree(root, variant):
    full = variant == "full"
    d = os.path.join(root, "d")
    os.makedirs(d)

    def write(rel, data):
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)

    write("d/small.txt", b"hello\n")
    write("d/empty", b"")
    write("d/odd.bin", bytes((i * 7 + 3) % 256 for i in range(1000)))
    write("d/block.bin", bytes((i * 13) % 251 for i in range(4096)))
    # ustar can hold a long path only through its prefix: keep the last component ≤ 100 bytes.
    long_name = "d/" + "n" * (120 if full else 99)
    write(long_name, b"long name\n")
    # > 255 bytes in total, but every component short: ustar's prefix cannot hold it.
    deep = "deep/" + "/".join(("segment%02d_" % i) + "x" * 40 for i in range(6 if full else 2))
    os.makedirs(os.path.join(root, deep))
    write(deep + "/leaf-file-with-a-rather-long-name-to-push-past-the-limits.txt", b"deep\n")
    write("d/h\u00e9llo w\u00f6rld.txt".encode("utf-8").decode("utf-8"), b"utf8\n")
    os.link(os.path.join(root, "d/small.txt"), os.path.join(root, "d/hard"))
    if full:
        os.link(os.path.join(root, long_name), os.path.join(root, "d/hard-to-long"))
    os.symlink("small.txt", os.path.join(root, "d/sym"))
    os.symlink("../" + ("t" * 110 if full else "t" * 60), os.path.join(root, "d/sym-long"))
    os.mkfifo(os.path.join(root, "d/fifo"))
    os.chmod(os.path.join(root, "d/odd.bin"), 0o4755)
    if os.geteuid() == 0:
        os.mknod(os.path.join(root, "d/null"), 0o20666, os.makedev(1, 3))
        os.mknod(os.path.join(root, "d/loop"), 0o60660, os.makedev(7, 200))
        os.chown(os.path.join(root, "d/block.bin"), 1234, 5678)
        if full:  # ids ≥ 2^21: base-256 in GNU headers, PAX uid/gid otherwise
            os.chown(os.path.join(root, "d/odd.bin"), 3000000, 4000000)
            os.chmod(os.path.join(root, "d/odd.bin"), 0o4755)
    if full:
        os.setxattr(os.path.join(root, "d/small.txt"), "user.bin", BINARY_XATTR)
        os.setxattr(os.path.join(root, "d/small.txt"), "user.text", b"plain")
        os.utime(os.path.join(root, "d/odd.bin"), ns=(1700000000123456789, 1700000000987654321))
        os.utime(os.path.join(root, "d/empty"), ns=(-315619200000000000, -315619200000000000))
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in filenames + dirnames:
            p = os.path.join(dirpath, n)
            if (full and n in ("odd.bin", "empty")) or os.path.islink(p):
                continue
            os.utime(p, (1700000000, 1700000000))
    os.utime(root, (1700000000, 1700000000))


def stat_tree(root):
    import hashlib
    import stat as st
    out = {}
    inodes = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            s = os.lstat(p)
            info = {
                "mode": st.S_IMODE(s.st_mode),
                "uid": s.st_uid,
                "gid": s.st_gid,
                "mtime_ns": str(s.st_mtime_ns),
            }
            if st.S_ISREG(s.st_mode):
                info["type"] = "file"
                with open(p, "rb") as f:
                    info["sha256"] = hashlib.sha256(f.read()).hexdigest()
                info["size"] = s.st_size
                info["inode_group"] = inodes.setdefault((s.st_dev, s.st_ino), rel)
            elif st.S_ISLNK(s.st_mode):
                info["type"] = "symlink"
                info["target"] = os.readlink(p)
                del info["mode"], info["mtime_ns"]
            elif st.S_ISCHR(s.st_mode) or st.S_ISBLK(s.st_mode):
                info["type"] = "char" if st.S_ISCHR(s.st_mode) else "block"
                info["rdev"] = [os.major(s.st_rdev), os.minor(s.st_rdev)]
            elif st.S_ISDIR(s.st_mode):
                info["type"] = "dir"
                del info["mtime_ns"]  # changes as entries are extracted into it
            elif st.S_ISFIFO(s.st_mode):
                info["type"] = "fifo"
            if not st.S_ISLNK(s.st_mode):
                info["xattrs"] = {
                    k: os.getxattr(p, k, follow_symlinks=False).hex()
                    for k in sorted(os.listxattr(p, follow_symlinks=False))
                    if k.startswith("user.")
                }
            out[rel] = info
    print(json.dumps(out, sort_keys=True))


def extract(archive, dest):
    with tarfile.open(archive, "r:") as tf:
        tf.extractall(dest, numeric_owner=True)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "list":
        list_members(sys.argv[2])
    elif cmd == "create":
        create(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "stat":
        stat_tree(sys.argv[2])
    elif cmd == "extract":
        extract(sys.argv[2], sys.argv[3])
    elif cmd == "mktree":
        mktree(sys.argv[2], sys.argv[3])
    elif cmd == "global":
        global_header(sys.argv[2])
    else:
        sys.exit("unknown command " + cmd)
