/*
 * powercut.c: an LD_PRELOAD shim that records what a power cut would keep.
 *
 * Loaded into the vault's writer by vault/tests/power.rs. For every successful fsync/fdatasync
 * of a file or directory inside $CAIRN_POWER_DIR it appends one line to $CAIRN_POWER_JOURNAL:
 *
 *   sync <inode> <length>           a file's first <length> bytes are durable (its size when the
 *                                   sync began: bytes appended while it ran may or may not be)
 *   dir <name>=<inode> ...          the directory's entries are durable (listed when the sync began)
 *
 * and keeps a hard link to every file it has seen in $CAIRN_POWER_GRAVE/<inode>, so that files the
 * writer deletes later can still be reconstructed. RocksDB only appends to its files (WAL,
 * MANIFEST, table files; CURRENT and OPTIONS are written under a temporary name and renamed), so a
 * file's first <length> bytes at the end of the run are the bytes that were synced.
 *
 * The writer appends its own lines ("ack ...") to the same journal (O_APPEND, one write per line),
 * after the call that made them durable returned, so the journal is one ordered history: a cut
 * after line k keeps the directory of the last `dir` line before k, each file truncated to its
 * last `sync` length before k (0 if none), and everything acknowledged before k must be there.
 *
 * When it is loaded into a process whose journal is still empty, it first records the directory
 * as it is, in full (the log the test created before the writer started, taken as durable).
 *
 * Build: cc -shared -fPIC -O2 -o libpowercut.so powercut.c -ldl
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static const char *env(const char *name) {
  const char *v = getenv(name);
  return (v && *v) ? v : NULL;
}

static void journal(const char *line, size_t len) {
  const char *path = env("CAIRN_POWER_JOURNAL");
  if (!path) return;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) abort(); /* a journal we cannot write would make the test lie */
  if (write(fd, line, len) != (ssize_t)len) abort();
  close(fd);
}

/* Keeps a hard link to the file at `from` (relative to `dirfd`, or a /proc/self/fd path). */
static void keep(int dirfd, const char *from, ino_t ino, int flags) {
  const char *grave = env("CAIRN_POWER_GRAVE");
  if (!grave) return;
  char to[PATH_MAX];
  snprintf(to, sizeof to, "%s/%llu", grave, (unsigned long long)ino);
  if (linkat(dirfd, from, AT_FDCWD, to, flags) != 0 && errno != EEXIST && errno != ENOENT) abort();
}

/* Lists the directory's entries as a `dir` line (and keeps each file; with `with_sizes`, journals
 * each file's full size as synced). Returns the line (malloc'd), length in *len. Call with `lock`
 * held. */
static char *list_dir(const char *dir, int with_sizes, size_t *out_len) {
  DIR *d = opendir(dir);
  if (!d) abort();
  size_t cap = 1 << 16, len = 0;
  char *line = malloc(cap);
  if (!line) abort();
  len += (size_t)snprintf(line, cap, "dir");
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
    keep(dirfd(d), e->d_name, st.st_ino, 0);
    if (with_sizes) {
      char sync[128];
      int n = snprintf(sync, sizeof sync, "sync %llu %lld\n", (unsigned long long)st.st_ino,
                       (long long)st.st_size);
      journal(sync, (size_t)n);
    }
    size_t need = strlen(e->d_name) + 32;
    if (len + need + 2 > cap) {
      cap = 2 * (len + need + 2);
      line = realloc(line, cap);
      if (!line) abort();
    }
    len += (size_t)snprintf(line + len, cap - len, " %s=%llu", e->d_name,
                            (unsigned long long)st.st_ino);
  }
  closedir(d);
  line[len++] = '\n';
  *out_len = len;
  return line;
}

__attribute__((constructor)) static void start(void) {
  const char *dir = env("CAIRN_POWER_DIR"), *path = env("CAIRN_POWER_JOURNAL");
  if (!dir || !path) return;
  struct stat st;
  if (stat(path, &st) == 0 && st.st_size > 0) return;
  pthread_mutex_lock(&lock);
  size_t len;
  char *line = list_dir(dir, 1, &len);
  journal(line, len);
  free(line);
  pthread_mutex_unlock(&lock);
}

/* What a sync of `fd` covers, taken before the sync starts. */
struct before {
  int kind; /* 0: not ours, 1: file, 2: the directory */
  ino_t ino;
  off_t size;
};

static struct before look(int fd) {
  struct before b = {0, 0, 0};
  const char *dir = env("CAIRN_POWER_DIR");
  if (!dir) return b;
  char proc[64], path[PATH_MAX];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(proc, path, sizeof path - 1);
  if (n <= 0) return b;
  path[n] = 0;
  size_t dl = strlen(dir);
  struct stat st;
  if (fstat(fd, &st) != 0) return b;
  if (strcmp(path, dir) == 0 && S_ISDIR(st.st_mode)) {
    b.kind = 2;
  } else if (strncmp(path, dir, dl) == 0 && path[dl] == '/' && S_ISREG(st.st_mode)) {
    b.kind = 1;
    b.ino = st.st_ino;
    b.size = st.st_size;
  }
  return b;
}

/* A file: its size before the sync is durable once the sync returned 0. The directory: its
 * entries as listed before the sync (entries created while it runs may be missing from the record,
 * which only makes the cut harsher). */
static int wrap(int fd, int (*real)(int)) {
  struct before b = look(fd);
  if (b.kind == 0) return real(fd);
  char *listed = NULL;
  size_t len = 0;
  if (b.kind == 2) {
    pthread_mutex_lock(&lock);
    listed = list_dir(env("CAIRN_POWER_DIR"), 0, &len);
    pthread_mutex_unlock(&lock);
  }
  int r = real(fd);
  if (r == 0) {
    pthread_mutex_lock(&lock);
    if (b.kind == 2) {
      journal(listed, len);
    } else {
      char proc[64], line[128];
      snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
      keep(AT_FDCWD, proc, b.ino, AT_SYMLINK_FOLLOW);
      int n = snprintf(line, sizeof line, "sync %llu %lld\n", (unsigned long long)b.ino,
                       (long long)b.size);
      journal(line, (size_t)n);
    }
    pthread_mutex_unlock(&lock);
  }
  free(listed);
  return r;
}

int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  return wrap(fd, real);
}

int fdatasync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  return wrap(fd, real);
}
