// compileSeccomp(): a profile already checked by lib/seccomp (names, types,
// pointers) -> the classic BPF program libseccomp generates for it, as the
// bytes of a struct sock_filter array. Runs on the main thread, once per
// distinct profile (lib/seccomp/compile.ts caches the result); the clone
// child only hands the bytes to seccomp(2).
//
// seccompProbe(): what the running kernel offers (filter flags and return
// actions), asked with seccomp(2) itself so that nothing is installed.

#include "seccomp.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

#ifndef SECCOMP_GET_ACTION_AVAIL
#define SECCOMP_GET_ACTION_AVAIL 2
#endif
#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif

namespace {

// A JS Error carrying the JSON pointer (relative to the profile) at fault.
Napi::Value fail(Napi::Env env, const std::string &pointer, const std::string &msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("pointer", Napi::String::New(env, pointer));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// The kernel's SECCOMP_RET_* value of a libseccomp action (for the probe).
uint32_t kernel_action(uint32_t act) {
  uint32_t base = act & 0xffff0000U;
  if (base == 0x7ff00000U) return 0x7ff00000U;  // TRACE(n)
  if (base == 0x00050000U) return 0x00050000U;  // ERRNO(n)
  return act;
}

bool action_available(uint32_t act) {
  uint32_t k = kernel_action(act);
  return syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &k) == 0;
}

// OCI action name + errno value -> libseccomp action; false if unknown.
bool parse_action(const std::string &name, uint32_t ret, uint32_t *out) {
  if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD")
    *out = SCMP_ACT_KILL_THREAD;
  else if (name == "SCMP_ACT_KILL_PROCESS")
    *out = SCMP_ACT_KILL_PROCESS;
  else if (name == "SCMP_ACT_TRAP")
    *out = SCMP_ACT_TRAP;
  else if (name == "SCMP_ACT_ERRNO")
    *out = SCMP_ACT_ERRNO(ret);
  else if (name == "SCMP_ACT_TRACE")
    *out = SCMP_ACT_TRACE(ret);
  else if (name == "SCMP_ACT_ALLOW")
    *out = SCMP_ACT_ALLOW;
  else if (name == "SCMP_ACT_LOG")
    *out = SCMP_ACT_LOG;
  else
    return false;
  return true;
}

bool parse_op(const std::string &name, enum scmp_compare *out) {
  static const struct {
    const char *name;
    enum scmp_compare op;
  } ops[] = {
      {"SCMP_CMP_NE", SCMP_CMP_NE},
      {"SCMP_CMP_LT", SCMP_CMP_LT},
      {"SCMP_CMP_LE", SCMP_CMP_LE},
      {"SCMP_CMP_EQ", SCMP_CMP_EQ},
      {"SCMP_CMP_GE", SCMP_CMP_GE},
      {"SCMP_CMP_GT", SCMP_CMP_GT},
      {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
  };
  for (const auto &o : ops)
    if (name == o.name) {
      *out = o.op;
      return true;
    }
  return false;
}

uint64_t to_u64(Napi::Value v) {
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return (uint64_t)v.As<Napi::Number>().Int64Value();
  return 0;
}

std::string str_of(Napi::Object o, const char *key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

uint32_t errno_of(Napi::Object o, const char *key, uint32_t dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : dflt;
}

struct ctx_guard {
  scmp_filter_ctx ctx;
  ~ctx_guard() {
    if (ctx) seccomp_release(ctx);
  }
};

struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0) close(fd);
  }
};

// compileSeccomp({defaultAction, defaultErrnoRet, architectures: [name],
//   rules: [{name, action, errnoRet, pointer, args: [{index, value, valueTwo, op}]}]})
// -> {filter: Buffer, unknown: [syscall names libseccomp does not know]}
Napi::Value JsCompileSeccomp(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "compileSeccomp(profile)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object p = info[0].As<Napi::Object>();
  uint32_t dflt_errno = errno_of(p, "defaultErrnoRet", EPERM);
  uint32_t dflt;
  if (!parse_action(str_of(p, "defaultAction"), dflt_errno, &dflt))
    return fail(env, "/defaultAction", "unknown action " + str_of(p, "defaultAction"));
  if (!action_available(dflt))
    return fail(env, "/defaultAction", "the kernel does not offer the action " + str_of(p, "defaultAction"));

  ctx_guard g{seccomp_init(dflt)};
  if (!g.ctx) return fail(env, "/defaultAction", "libseccomp refused the default action " + str_of(p, "defaultAction"));
  // A syscall made through an ABI the filter does not list (int 0x80 on
  // x86_64, x32) kills the process rather than one thread of it.
  seccomp_attr_set(g.ctx, SCMP_FLTATR_ACT_BADARCH,
                   action_available(SCMP_ACT_KILL_PROCESS) ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_KILL_THREAD);
  // The child sets no_new_privs itself (or, without it, relies on
  // CAP_SYS_ADMIN); the attribute only matters to seccomp_load anyway.
  seccomp_attr_set(g.ctx, SCMP_FLTATR_CTL_NNP, 0);
  // A binary tree over syscall numbers: long lists cost O(log n) per syscall.
  seccomp_attr_set(g.ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);

  Napi::Value archv = p.Get("architectures");
  if (archv.IsArray()) {
    Napi::Array arches = archv.As<Napi::Array>();
    for (uint32_t i = 0; i < arches.Length(); i++) {
      std::string ptr = "/architectures/" + std::to_string(i);
      Napi::Value a = arches.Get(i);
      std::string name = a.IsString() ? a.As<Napi::String>().Utf8Value() : "";
      std::string lower = name.rfind("SCMP_ARCH_", 0) == 0 ? name.substr(10) : name;
      for (auto &c : lower) c = (char)tolower((unsigned char)c);
      uint32_t token = seccomp_arch_resolve_name(lower.c_str());
      if (!token)
        return fail(env, ptr,
                    "architecture " + name + " is not known to libseccomp " + std::to_string(seccomp_version()->major) +
                        "." + std::to_string(seccomp_version()->minor) + "." +
                        std::to_string(seccomp_version()->micro));
      int r = seccomp_arch_add(g.ctx, token);
      if (r < 0 && r != -EEXIST)
        return fail(env, ptr, "libseccomp cannot add architecture " + name + ": " + strerror(-r));
    }
  }

  Napi::Array unknown = Napi::Array::New(env);
  Napi::Value rulesv = p.Get("rules");
  Napi::Array rules = rulesv.IsArray() ? rulesv.As<Napi::Array>() : Napi::Array::New(env);
  for (uint32_t i = 0; i < rules.Length(); i++) {
    Napi::Object rule = rules.Get(i).As<Napi::Object>();
    std::string ptr = str_of(rule, "pointer");
    std::string name = str_of(rule, "name");
    std::string aname = str_of(rule, "action");
    uint32_t act;
    if (!parse_action(aname, errno_of(rule, "errnoRet", EPERM), &act))
      return fail(env, ptr + "/action", "unknown action " + aname);
    if (!action_available(act)) return fail(env, ptr + "/action", "the kernel does not offer the action " + aname);
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) {
      unknown.Set(unknown.Length(), name);
      continue;
    }
    // As runc: a rule that repeats the default action adds nothing (libseccomp refuses it).
    if (act == dflt) continue;
    std::vector<struct scmp_arg_cmp> cmps;
    Napi::Value argsv = rule.Get("args");
    Napi::Array args = argsv.IsArray() ? argsv.As<Napi::Array>() : Napi::Array::New(env);
    bool same_index = false;
    for (uint32_t k = 0; k < args.Length(); k++) {
      Napi::Object a = args.Get(k).As<Napi::Object>();
      enum scmp_compare op;
      std::string opname = str_of(a, "op");
      std::string aptr = ptr + "/args/" + std::to_string(k);
      if (!parse_op(opname, &op)) return fail(env, aptr + "/op", "unknown operator " + opname);
      unsigned index = a.Get("index").As<Napi::Number>().Uint32Value();
      if (index > 5) return fail(env, aptr + "/index", "must be between 0 and 5");
      for (const auto &c : cmps) same_index |= c.arg == index;
      cmps.push_back({index, op, to_u64(a.Get("value")), to_u64(a.Get("valueTwo"))});
    }
    int r;
    if (same_index) {
      // libseccomp cannot AND two comparisons of one argument; as runc and
      // crun do, such conditions become separate rules (OR).
      r = 0;
      for (size_t k = 0; k < cmps.size() && r == 0; k++) r = seccomp_rule_add_array(g.ctx, act, nr, 1, &cmps[k]);
    } else {
      r = seccomp_rule_add_array(g.ctx, act, nr, (unsigned)cmps.size(), cmps.data());
    }
    if (r < 0) return fail(env, ptr, "libseccomp refused the rule for " + name + ": " + strerror(-r));
  }

  fd_guard out{memfd_create("nodularity-seccomp", MFD_CLOEXEC)};
  if (out.fd < 0) return fail(env, "", std::string("memfd_create: ") + strerror(errno));
  int r = seccomp_export_bpf(g.ctx, out.fd);
  if (r < 0) return fail(env, "", std::string("libseccomp could not generate the filter: ") + strerror(-r));
  off_t size = lseek(out.fd, 0, SEEK_END);
  if (size <= 0 || size % sizeof(struct sock_filter) != 0 || size / sizeof(struct sock_filter) > BPF_MAXINSNS)
    return fail(env, "",
                "the generated filter has " + std::to_string((long)size / 8) +
                    " instructions; the kernel takes at most " + std::to_string(BPF_MAXINSNS));
  Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, (size_t)size);
  ssize_t got = pread(out.fd, buf.Data(), (size_t)size, 0);
  if (got != size)
    return fail(env, "", std::string("reading the generated filter: ") + (got < 0 ? strerror(errno) : "short read"));
  Napi::Object res = Napi::Object::New(env);
  res.Set("filter", buf);
  res.Set("unknown", unknown);
  return res;
}

// seccompProbe() -> {flags: mask of the SECCOMP_FILTER_FLAG_* the kernel
// knows, actions: [OCI action names the kernel offers], libseccomp: "2.5.4"}
Napi::Value JsSeccompProbe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t flags = 0;
  // With a NULL program the kernel checks the flags, then fails the copy
  // (EFAULT): nothing is installed. EINVAL means an unknown flag.
  static const unsigned long probe[] = {1UL << 0, 1UL << 1, 1UL << 2, 1UL << 5};
  for (unsigned long f : probe) {
    unsigned long with = f == (1UL << 5) ? f | SECCOMP_FILTER_FLAG_NEW_LISTENER : f;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, with, NULL) < 0 && errno == EFAULT) flags |= (uint32_t)f;
  }
  Napi::Array actions = Napi::Array::New(env);
  static const char *names[] = {"SCMP_ACT_KILL",  "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
                                "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE",        "SCMP_ACT_ALLOW",       "SCMP_ACT_LOG"};
  for (const char *n : names) {
    uint32_t act;
    if (parse_action(n, EPERM, &act) && action_available(act)) actions.Set(actions.Length(), n);
  }
  const struct scmp_version *v = seccomp_version();
  Napi::Object res = Napi::Object::New(env);
  res.Set("flags", flags);
  res.Set("actions", actions);
  res.Set("libseccomp", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->micro));
  res.Set("nativeArch", (double)seccomp_arch_native());
  return res;
}

}  // namespace

void seccomp_register(Napi::Env env, Napi::Object exports) {
  exports.Set("compileSeccomp", Napi::Function::New(env, JsCompileSeccomp, "compileSeccomp"));
  exports.Set("seccompProbe", Napi::Function::New(env, JsSeccompProbe, "seccompProbe"));
}
