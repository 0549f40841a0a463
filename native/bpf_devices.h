// cgroup v2 device rules: load a BPF_PROG_TYPE_CGROUP_DEVICE program and
// attach it to a cgroup (see bpf_devices.cc).
#pragma once
#include <napi.h>

void bpf_devices_register(Napi::Env env, Napi::Object exports);
