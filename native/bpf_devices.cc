// cgroup v2 has no devices controller: device rules are a BPF program of type
// BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup (BPF_CGROUP_DEVICE), as
// runc and crun do. The program is assembled in lib/cgroups/bpf-devices.ts
// (pure, unit-tested); this file only makes the two bpf(2) calls:
//
//   attachDeviceProgram(cgroupDir, insns: Buffer of struct bpf_insn)
//     -> { errno: 0 } or { errno: E, log: "verifier output" }
//
// The program is attached with BPF_F_ALLOW_MULTI (as runc): programs of the
// parent cgroups still run, so a container cannot widen what its parent
// allows. The attachment lives as long as the cgroup: rmdir ends it, and the
// program fd is closed here once attached.
#include "bpf_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

long sys_bpf(int cmd, union bpf_attr *attr) {
  return syscall(__NR_bpf, cmd, attr, sizeof *attr);
}

Napi::Value JsAttachDeviceProgram(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBuffer()) {
    Napi::TypeError::New(env, "Usage: attachDeviceProgram(cgroupDir: string, insns: Buffer)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string dir = info[0].As<Napi::String>().Utf8Value();
  Napi::Buffer<uint8_t> insns = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Object out = Napi::Object::New(env);
  if (insns.Length() == 0 || insns.Length() % sizeof(struct bpf_insn) != 0) {
    Napi::TypeError::New(env, "attachDeviceProgram: insns must be whole struct bpf_insn").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int cg = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (cg < 0) {
    out.Set("errno", errno);
    out.Set("step", "open");
    return out;
  }
  // A copy: the buffer's memory belongs to V8, and the verifier log is ours.
  std::vector<uint8_t> prog(insns.Data(), insns.Data() + insns.Length());
  std::vector<char> log(64 * 1024, '\0');
  static const char license[] = "Apache";
  union bpf_attr load;
  memset(&load, 0, sizeof load);
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insns = (uint64_t)(uintptr_t)prog.data();
  load.insn_cnt = (uint32_t)(prog.size() / sizeof(struct bpf_insn));
  load.license = (uint64_t)(uintptr_t)license;
  load.log_buf = (uint64_t)(uintptr_t)log.data();
  load.log_size = (uint32_t)log.size();
  load.log_level = 1;
  int fd = (int)sys_bpf(BPF_PROG_LOAD, &load);
  if (fd < 0 && errno == ENOSPC) {
    // The log overflowed: load again without it (the program may still be fine).
    load.log_buf = 0;
    load.log_size = 0;
    load.log_level = 0;
    fd = (int)sys_bpf(BPF_PROG_LOAD, &load);
  }
  if (fd < 0) {
    int e = errno;
    close(cg);
    out.Set("errno", e);
    out.Set("step", "load");
    out.Set("log", std::string(log.data(), strnlen(log.data(), log.size())));
    return out;
  }
  union bpf_attr attach;
  memset(&attach, 0, sizeof attach);
  attach.target_fd = (uint32_t)cg;
  attach.attach_bpf_fd = (uint32_t)fd;
  attach.attach_type = BPF_CGROUP_DEVICE;
  attach.attach_flags = BPF_F_ALLOW_MULTI;
  long r = sys_bpf(BPF_PROG_ATTACH, &attach);
  int e = errno;
  close(fd);
  close(cg);
  out.Set("errno", r < 0 ? e : 0);
  if (r < 0) out.Set("step", "attach");
  return out;
}

}  // namespace

void bpf_devices_register(Napi::Env env, Napi::Object exports) {
  exports.Set("attachDeviceProgram", Napi::Function::New(env, JsAttachDeviceProgram, "attachDeviceProgram"));
}
