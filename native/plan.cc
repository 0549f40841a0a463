// plan_from_js(): the JS LaunchPlan -> launch_plan, with every string copied
// into storage the plan owns, so nothing the child touches can move or be
// collected. Policy lives in lib/plan; here we only check types, naming the
// field ("plan.ops[3].target must be a string"), as better-sqlite3 does.

#include "plan_js.h"

#include <sched.h>

#include <cstring>

namespace {

struct reader {
  Napi::Env env;
  plan_store *store;
  bool failed = false;

  void fail(const std::string &field, const char *what) {
    if (failed) return;
    failed = true;
    Napi::TypeError::New(env, "plan." + field + " must be " + what).ThrowAsJavaScriptException();
  }

  const char *keep(const std::string &s) {
    std::unique_ptr<char[]> buf(new char[s.size() + 1]);
    memcpy(buf.get(), s.c_str(), s.size() + 1);
    const char *p = buf.get();
    store->strings.push_back(std::move(buf));
    return p;
  }

  // A string (no NUL inside) or, when optional, undefined/null -> nullptr.
  const char *str(Napi::Object o, const char *key, const std::string &field, bool optional = false) {
    Napi::Value v = o.Get(key);
    if (optional && (v.IsUndefined() || v.IsNull())) return nullptr;
    if (!v.IsString()) {
      fail(field, "a string");
      return nullptr;
    }
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s.find('\0') != std::string::npos) {
      fail(field, "a string without NUL bytes");
      return nullptr;
    }
    return keep(s);
  }

  double num(Napi::Object o, const char *key, const std::string &field, double dflt = 0, bool optional = true) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() && optional) return dflt;
    if (!v.IsNumber()) {
      fail(field, "a number");
      return dflt;
    }
    return v.As<Napi::Number>().DoubleValue();
  }

  // 64-bit masks and limits: a non-negative integer Number (exact up to
  // 2^53) or a BigInt that fits in 64 bits without loss.
  uint64_t u64(Napi::Object o, const char *key, const std::string &field) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return 0;
    if (v.IsNumber()) {
      double d = v.As<Napi::Number>().DoubleValue();
      if (!(d >= 0 && d <= 9007199254740991.0 && d == (double)(uint64_t)d)) {
        fail(field, "a non-negative integer");
        return 0;
      }
      return (uint64_t)d;
    }
    if (v.IsBigInt()) {
      bool lossless = false;
      uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless) {
        fail(field, "a bigint between 0 and 2^64-1");
        return 0;
      }
      return x;
    }
    fail(field, "a number or bigint");
    return 0;
  }

  // A boolean; undefined gives the default, anything else is a TypeError.
  bool flag(Napi::Object o, const char *key, const std::string &field, bool dflt = false) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return dflt;
    if (!v.IsBoolean()) {
      fail(field, "a boolean");
      return dflt;
    }
    return v.As<Napi::Boolean>().Value();
  }

  Napi::Array arr(Napi::Object o, const char *key, const std::string &field) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return Napi::Array::New(env, 0);
    if (!v.IsArray()) {
      fail(field, "an array");
      return Napi::Array::New(env, 0);
    }
    return v.As<Napi::Array>();
  }

  void strv(Napi::Object o, const char *key, const std::string &field, std::vector<char *> &out) {
    Napi::Array a = arr(o, key, field);
    for (uint32_t i = 0; i < a.Length() && !failed; i++) {
      Napi::Value v = a.Get(i);
      std::string f = field + "[" + std::to_string(i) + "]";
      if (!v.IsString()) {
        fail(f, "a string");
        return;
      }
      std::string s = v.As<Napi::String>().Utf8Value();
      if (s.find('\0') != std::string::npos) {
        fail(f, "a string without NUL bytes");
        return;
      }
      out.push_back(const_cast<char *>(keep(s)));
    }
    out.push_back(nullptr);
  }
};

}  // namespace

std::unique_ptr<plan_store> plan_from_js(Napi::Env env, Napi::Object o) {
  auto store = std::make_unique<plan_store>();
  reader r{env, store.get()};
  plan_store &st = *store;
  launch_plan &p = st.plan;

  p.clone_flags = (int)r.num(o, "cloneFlags", "cloneFlags", 0, false);
  p.id_mode = (int)r.num(o, "idMode", "idMode", IDMAP_NONE);
  p.uid_map = r.str(o, "uidMap", "uidMap", true);
  p.gid_map = r.str(o, "gidMap", "gidMap", true);
  p.setgroups_deny = r.flag(o, "setgroupsDeny", "setgroupsDeny");
  p.setup_uid = (int)r.num(o, "setupUid", "setupUid", -1);
  p.setup_gid = (int)r.num(o, "setupGid", "setupGid", -1);
  if (p.id_mode == IDMAP_HELPER) {
    r.strv(o, "uidHelperArgs", "uidHelperArgs", st.uid_helper_argv);
    r.strv(o, "gidHelperArgs", "gidHelperArgs", st.gid_helper_argv);
    p.uid_helper_argv = st.uid_helper_argv.data();
    p.gid_helper_argv = st.gid_helper_argv.data();
  }
  p.hostname = r.str(o, "hostname", "hostname", true);
  p.domainname = r.str(o, "domainname", "domainname", true);
  p.root_propagation = r.u64(o, "rootPropagation", "rootPropagation");
  p.root_propagation_after = r.u64(o, "rootPropagationAfter", "rootPropagationAfter");
  p.rootfs = r.str(o, "rootfs", "rootfs", true);  // absent: an exec into a running container

  Napi::Array joins = r.arr(o, "joins", "joins");
  for (uint32_t i = 0; i < joins.Length() && !r.failed; i++) {
    std::string f = "joins[" + std::to_string(i) + "]";
    Napi::Value v = joins.Get(i);
    if (!v.IsObject() || i >= MAX_NS_JOINS) {
      r.fail(f, "an object {type, path} (at most 8)");
      break;
    }
    Napi::Object jo = v.As<Napi::Object>();
    st.joins.push_back({(int)r.num(jo, "type", f + ".type", 0, false), r.str(jo, "path", f + ".path")});
  }
  p.joins = st.joins.data();
  p.n_joins = (int)st.joins.size();
  p.unshare_flags = (int)r.num(o, "unshareFlags", "unshareFlags");
  p.fork_after_join = r.flag(o, "forkAfterJoin", "forkAfterJoin");
  p.join_pid = (int)r.num(o, "joinPid", "joinPid");
  p.time_offsets = r.str(o, "timeOffsets", "timeOffsets", true);
  Napi::Array sysctls = r.arr(o, "sysctls", "sysctls");
  for (uint32_t i = 0; i < sysctls.Length() && !r.failed; i++) {
    std::string f = "sysctls[" + std::to_string(i) + "]";
    Napi::Value v = sysctls.Get(i);
    if (!v.IsObject()) {
      r.fail(f, "an object {path, value}");
      break;
    }
    Napi::Object so = v.As<Napi::Object>();
    const char *path = r.str(so, "path", f + ".path");
    if (path && strncmp(path, "/proc/sys/", 10) != 0) {
      r.fail(f + ".path", "a path under /proc/sys/");
      break;
    }
    st.sysctls.push_back({path, r.str(so, "value", f + ".value")});
  }
  p.sysctls = st.sysctls.data();
  p.n_sysctls = (int)st.sysctls.size();
  Napi::Value oom = o.Get("oomScoreAdj");
  if (!oom.IsUndefined()) {
    p.set_oom_score_adj = 1;
    p.oom_score_adj = (int)r.num(o, "oomScoreAdj", "oomScoreAdj");
  }
  p.personality = (long)r.num(o, "personality", "personality", -1);
  p.umask = (int)r.num(o, "umask", "umask", -1);
  p.hooks_pause = r.flag(o, "hooksPause", "hooksPause");
  if (p.hooks_pause && !p.rootfs && !r.failed) r.fail("hooksPause", "false for an exec (no root to pivot into)");
  if ((p.n_joins || p.unshare_flags || p.fork_after_join) && p.clone_flags && !r.failed)
    r.fail("cloneFlags", "0 in join mode (joins/unshareFlags: the child makes the namespaces)");
  if ((p.id_mode == IDMAP_PARENT || p.id_mode == IDMAP_HELPER) && (p.n_joins || p.unshare_flags) && !r.failed)
    r.fail("idMode", "the child's own (single ID) or none in join mode");
  p.root_readonly = r.flag(o, "rootReadonly", "rootReadonly");
  p.overlay_data = r.str(o, "overlayData", "overlayData", true);
  if (p.overlay_data) {
    p.overlay_tmpfs_data = r.str(o, "overlayTmpfsData", "overlayTmpfsData");
    p.overlay_dirs[0] = r.str(o, "overlayLower", "overlayLower");
    p.overlay_dirs[1] = r.str(o, "overlayUpper", "overlayUpper");
    p.overlay_dirs[2] = r.str(o, "overlayWork", "overlayWork");
    std::vector<char *> prep;
    r.strv(o, "overlayPrep", "overlayPrep", prep);
    for (char *q : prep) {
      if (!q) break;
      size_t n = strlen(q);
      if (q[0] != '/' || strlen(p.overlay_dirs[1] ? p.overlay_dirs[1] : "") >= n || n >= 4096) {
        r.fail("overlayPrep", "absolute paths under overlayUpper");
        break;
      }
      st.overlay_prep.push_back({q, q[n - 1] == '/'});
    }
    p.overlay_prep = st.overlay_prep.data();
    p.overlay_persist = r.str(o, "overlayPersist", "overlayPersist", true);
    if (p.overlay_persist) {
      p.overlay_persist_at = r.str(o, "overlayPersistAt", "overlayPersistAt");
      p.overlay_persist_ro = r.flag(o, "overlayPersistReadonly", "overlayPersistReadonly");
    }
    p.n_overlay_prep = (int)st.overlay_prep.size();
  }
  p.loopback = r.flag(o, "loopback", "loopback");
  p.cwd = r.str(o, "cwd", "cwd");

  Napi::Array ops = r.arr(o, "ops", "ops");
  for (uint32_t i = 0; i < ops.Length() && !r.failed; i++) {
    std::string f = "ops[" + std::to_string(i) + "]";
    Napi::Value v = ops.Get(i);
    if (!v.IsObject()) {
      r.fail(f, "an object");
      break;
    }
    Napi::Object op = v.As<Napi::Object>();
    mount_op m{};
    m.kind = (int)r.num(op, "kind", f + ".kind", 0, false);
    if (m.kind < OP_MOUNT || m.kind > OP_MKNOD) {
      r.fail(f + ".kind", "a known op kind (0..7)");
      break;
    }
    m.source = r.str(op, "source", f + ".source", true);
    m.target = r.str(op, "target", f + ".target");
    m.fstype = r.str(op, "fstype", f + ".fstype", true);
    m.data = r.str(op, "data", f + ".data", true);
    m.flags = (unsigned long)r.num(op, "flags", f + ".flags");
    m.attr_set = r.u64(op, "attrSet", f + ".attrSet");
    m.attr_clr = r.u64(op, "attrClr", f + ".attrClr");
    m.propagation = r.u64(op, "propagation", f + ".propagation");
    m.recursive = r.flag(op, "recursive", f + ".recursive");
    m.mode = (unsigned)r.num(op, "mode", f + ".mode", 0755);
    m.fallback = r.str(op, "fallback", f + ".fallback", true);
    m.fallback_errnos = r.u64(op, "fallbackErrnos", f + ".fallbackErrnos");
    m.skip_missing = r.flag(op, "skipMissing", f + ".skipMissing");
    m.rattr_set = r.u64(op, "rattrSet", f + ".rattrSet");
    m.rattr_clr = r.u64(op, "rattrClr", f + ".rattrClr");
    m.resolve = (int)r.num(op, "resolve", f + ".resolve", RES_EXACT);
    m.rdev = r.u64(op, "rdev", f + ".rdev");
    m.uid = (long)r.num(op, "uid", f + ".uid", -1);
    m.gid = (long)r.num(op, "gid", f + ".gid", -1);
    if (m.resolve != RES_EXACT && m.resolve != RES_FOLLOW) {
      r.fail(f + ".resolve", "0 (exact) or 1 (follow)");
      break;
    }
    // Targets are container paths: absolute, and short enough for the child's
    // stack buffer (it splits parent and name without allocating).
    if (m.target && (m.target[0] != '/' || strlen(m.target) >= 4096)) {
      r.fail(f + ".target", "an absolute container path shorter than 4096 bytes");
      break;
    }
    if ((m.kind == OP_BIND || m.kind == OP_SYMLINK || m.kind == OP_MASK) && !m.source && !r.failed)
      r.fail(f + ".source", "a string for this op kind");
    st.ops.push_back(m);
  }
  p.ops = st.ops.data();
  p.n_ops = (int)st.ops.size();

  Napi::Array rl = r.arr(o, "rlimits", "rlimits");
  for (uint32_t i = 0; i < rl.Length() && !r.failed; i++) {
    std::string f = "rlimits[" + std::to_string(i) + "]";
    Napi::Value v = rl.Get(i);
    if (!v.IsObject()) {
      r.fail(f, "an object");
      break;
    }
    Napi::Object lo = v.As<Napi::Object>();
    st.rlimits.push_back({(int)r.num(lo, "resource", f + ".resource", 0, false), r.u64(lo, "soft", f + ".soft"),
                          r.u64(lo, "hard", f + ".hard")});
  }
  p.rlimits = st.rlimits.data();
  p.n_rlimits = (int)st.rlimits.size();

  p.set_ids = r.flag(o, "setIds", "setIds");
  p.uid = (uid_t)r.num(o, "uid", "uid");
  p.gid = (gid_t)r.num(o, "gid", "gid");
  Napi::Value groups = o.Get("groups");
  if (groups.IsArray()) {
    p.set_groups = 1;
    Napi::Array ga = groups.As<Napi::Array>();
    for (uint32_t i = 0; i < ga.Length(); i++) {
      Napi::Value g = ga.Get(i);
      if (!g.IsNumber()) {
        r.fail("groups[" + std::to_string(i) + "]", "a number");
        break;
      }
      st.groups.push_back((gid_t)g.As<Napi::Number>().Uint32Value());
    }
  }
  p.groups = st.groups.data();
  p.n_groups = (int)st.groups.size();
  p.cap_last = (int)r.num(o, "capLast", "capLast", 40);
  if (p.cap_last < 0 || p.cap_last > 63) r.fail("capLast", "between 0 and 63");
  p.cap_bounding = r.u64(o, "capBounding", "capBounding");
  p.cap_effective = r.u64(o, "capEffective", "capEffective");
  p.cap_permitted = r.u64(o, "capPermitted", "capPermitted");
  p.cap_inheritable = r.u64(o, "capInheritable", "capInheritable");
  p.cap_ambient = r.u64(o, "capAmbient", "capAmbient");
  p.no_new_privs = r.flag(o, "noNewPrivileges", "noNewPrivileges", true);
  p.pdeathsig = (int)r.num(o, "pdeathsig", "pdeathsig");
  p.root_nodev = r.flag(o, "rootNodev", "rootNodev", true);

  p.exec_path = r.str(o, "execPath", "execPath");
  r.strv(o, "args", "args", st.argv);
  r.strv(o, "env", "env", st.envp);
  if (!r.failed && st.argv.size() < 2) r.fail("args", "a non-empty array");
  p.argv = st.argv.data();
  p.envp = st.envp.data();
  p.use_init = r.flag(o, "init", "init");
  p.terminal = r.flag(o, "terminal", "terminal");
  p.console_rows = (unsigned short)r.num(o, "consoleRows", "consoleRows", 0);
  p.console_cols = (unsigned short)r.num(o, "consoleCols", "consoleCols", 0);

  Napi::Value filter = o.Get("seccompFilter");
  if (!filter.IsUndefined() && !filter.IsNull()) {
    if (!filter.IsBuffer())
      r.fail("seccompFilter", "a Buffer");
    else {
      Napi::Buffer<uint8_t> b = filter.As<Napi::Buffer<uint8_t>>();
      size_t n = b.Length() / sizeof(struct sock_filter);
      if (b.Length() % sizeof(struct sock_filter) || n == 0 || n > BPF_MAXINSNS)
        r.fail("seccompFilter", "a whole number of sock_filter instructions (1 to 4096)");
      else {
        st.seccomp.resize(n);
        memcpy(st.seccomp.data(), b.Data(), b.Length());
        p.seccomp_filter = st.seccomp.data();
        p.seccomp_len = (unsigned short)n;
        p.seccomp_flags = (unsigned)r.num(o, "seccompFlags", "seccompFlags", 0);
      }
    }
  }

  if ((p.id_mode == IDMAP_SELF || p.id_mode == IDMAP_PARENT) && (!p.uid_map || !p.gid_map) && !r.failed)
    r.fail("uidMap", "set (with gidMap) when idMode writes maps");
  if (p.id_mode == IDMAP_HELPER && (st.uid_helper_argv.size() < 2 || st.gid_helper_argv.size() < 2) && !r.failed)
    r.fail("uidHelperArgs", "set (with gidHelperArgs) when idMode is the helper");
  if ((p.id_mode < IDMAP_NONE || p.id_mode > IDMAP_HELPER) && !r.failed) r.fail("idMode", "0..3 (enum id_mode)");

  if (r.failed) return nullptr;
  return store;
}

bool plan_override_from_js(Napi::Env env, Napi::Object o, plan_store *own, launch_plan *p) {
  reader r{env, own};
  if (!o.Get("execPath").IsUndefined()) p->exec_path = r.str(o, "execPath", "override.execPath");
  if (!o.Get("args").IsUndefined()) {
    r.strv(o, "args", "override.args", own->argv);
    if (!r.failed && own->argv.size() < 2) r.fail("override.args", "a non-empty array");
    p->argv = own->argv.data();
  }
  if (!o.Get("env").IsUndefined()) {
    r.strv(o, "env", "override.env", own->envp);
    p->envp = own->envp.data();
  }
  if (!o.Get("hostname").IsUndefined()) {
    // Never the host's: only with a uts namespace of the container's own.
    if (!((p->clone_flags | p->unshare_flags) & CLONE_NEWUTS) && !r.failed)
      r.fail("override.hostname", "given only to a plan with a new uts namespace");
    p->hostname = r.str(o, "hostname", "override.hostname");
  }
  return !r.failed;
}
