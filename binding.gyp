{
  "targets": [
    {
      "target_name": "nodularity",
      "sources": [
        "native/addon.cc",
        "native/plan.cc",
        "native/spawn.cc",
        "native/child.cc",
        "native/exit_watch.cc",
        "native/seccomp.cc",
        "native/bpf_devices.cc"
      ],
      "libraries": ["-lseccomp"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-fstack-protector-strong", "-fvisibility=hidden"]
    },
    {
      "target_name": "nodularity-init",
      "type": "executable",
      "sources": ["native/init.c"],
      "cflags": ["-Os", "-Wall", "-Wextra", "-ffreestanding", "-fno-stack-protector", "-fno-builtin", "-fno-asynchronous-unwind-tables", "-fno-pie"],
      "cflags!": ["-fPIC", "-pthread"],
      "ldflags": ["-static", "-nostdlib", "-no-pie", "-s"],
      "ldflags!": ["-pthread", "-rdynamic"]
    },
    {
      "target_name": "nodularity-test-payload",
      "type": "executable",
      "sources": ["test/payload/payload.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "ldflags": ["-static"]
    }
  ]
}
