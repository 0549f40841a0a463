// Seccomp filters: compiled with libseccomp on the main thread (never in the
// clone child), exported as a classic BPF program the plan carries; the child
// only loads it with seccomp(2) (child.cc step_seccomp).
#ifndef NODULARITY_SECCOMP_H
#define NODULARITY_SECCOMP_H

#include <napi.h>

// Adds compileSeccomp() and seccompProbe() to the addon's exports.
void seccomp_register(Napi::Env env, Napi::Object exports);

#endif
