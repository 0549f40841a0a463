// The addon surface: init(), spawn(), and the ContainerHandle returned by
// spawn (kill, ref, unref). Argument unpacking and result objects only; the
// work is in plan.cc, spawn.cc, child.cc and exit_watch.cc.

#include <errno.h>
#include <fcntl.h>
#include <napi.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/nsfs.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include <uv.h>

#include "exit_watch.h"
#include "plan_js.h"
#include "bpf_devices.h"
#include "seccomp.h"
#include "spawn.h"
#include "syscalls.h"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

namespace {

// Per-addon state (env instance data): the ContainerHandle constructor and
// the library's error classes, given to init() as better-sqlite3 does, so
// that what native throws is already a ContainerError, never a plain Error.
struct addon_data {
  Napi::FunctionReference handle_ctor;
  Napi::FunctionReference compiled_ctor;
  Napi::FunctionReference container_error;  // new ContainerError(what, {step, errno, syscall, path})
};

// Throw ContainerError(what, {step, errno, syscall?, path?}); a TypeError
// naming the problem if init() has not given us the class yet.
void throw_container_error(Napi::Env env, const std::string &what, const char *step, int err,
                           const char *syscall = nullptr, const std::string *path = nullptr) {
  addon_data *d = env.GetInstanceData<addon_data>();
  if (d->container_error.IsEmpty()) {
    Napi::Error::New(env, what + ": " + strerror(err) + " (and init() was not given the error classes)")
        .ThrowAsJavaScriptException();
    return;
  }
  Napi::Object f = Napi::Object::New(env);
  f.Set("step", step);
  f.Set("errno", err);
  if (syscall) f.Set("syscall", syscall);
  if (path) f.Set("path", *path);
  Napi::Value e = d->container_error.New({Napi::String::New(env, what), f});
  if (env.IsExceptionPending()) return;  // the constructor threw: that exception stands
  Napi::Error(env, e).ThrowAsJavaScriptException();
}

// The init binary as a sealed memfd, made once per process: the child execs
// it with execveat(AT_EMPTY_PATH), so no container ever sees (or could write
// through /proc/1/exe to) a file of the host (runc's CVE-2019-5736 lesson).
int g_init_fd = -1;
// pidfd of this process: the clone child polls it to notice a launcher that
// died before the parent-death signal was armed.
int g_self_pidfd = -1;
// /dev/null for reading and for writing, opened once: stdio 'ignore' slots
// use them (the child dup2s them onto 0, 1, 2) instead of three opens per launch.
int g_null_fd[2] = {-1, -1};

int make_init_memfd(const char *path, std::string *why) {
  int src = open(path, O_RDONLY | O_CLOEXEC);
  if (src < 0) {
    *why = std::string("open ") + path;
    return -errno;
  }
  struct stat st;
  if (fstat(src, &st) < 0) {
    close(src);
    *why = "fstat";
    return -errno;
  }
  int fd = memfd_create("nodularity-init", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0 && errno == EINVAL) fd = memfd_create("nodularity-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    // No memfd: exec the file itself (still only through an fd).
    return src;
  }
  off_t off = 0;
  while (off < st.st_size) {
    ssize_t n = sendfile(fd, src, &off, st.st_size - off);
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      close(fd);
      close(src);
      *why = "sendfile";
      return -e;
    }
  }
  close(src);
  fchmod(fd, 0555);
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
    int e = errno;
    close(fd);
    *why = "seal memfd";
    return -e;
  }
  return fd;
}

Napi::Object rusage_to_js(Napi::Env env, const struct rusage &ru) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("userCPUTime", (double)ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec);  // µs, as process.resourceUsage()
  o.Set("systemCPUTime", (double)ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec);
  o.Set("maxRSS", (double)ru.ru_maxrss);  // KiB
  o.Set("minorPageFault", (double)ru.ru_minflt);
  o.Set("majorPageFault", (double)ru.ru_majflt);
  o.Set("fsRead", (double)ru.ru_inblock);
  o.Set("fsWrite", (double)ru.ru_oublock);
  o.Set("voluntaryContextSwitches", (double)ru.ru_nvcsw);
  o.Set("involuntaryContextSwitches", (double)ru.ru_nivcsw);
  return o;
}

class ContainerHandle;

// The launch on a libuv worker; resume >= 0: the second half after a pause
// for hooks (1: go on, 0: give up).
class SpawnWorker : public Napi::AsyncWorker {
 public:
  SpawnWorker(Napi::Function cb, ContainerHandle *h, std::unique_ptr<spawn_job> job, int resume = -1)
      : Napi::AsyncWorker(cb, "nodularity:spawn"), handle_(h), job_(std::move(job)), resume_(resume) {}
  void Execute() override {
    if (resume_ < 0)
      spawn_run(job_.get());
    else
      spawn_resume(job_.get(), resume_ == 1);
  }
  void OnOK() override;

 private:
  ContainerHandle *handle_;
  std::unique_ptr<spawn_job> job_;
  int resume_;
};

class ContainerHandle : public Napi::ObjectWrap<ContainerHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "ContainerHandle",
        {InstanceMethod("kill", &ContainerHandle::Kill), InstanceMethod("ref", &ContainerHandle::Ref_),
         InstanceMethod("unref", &ContainerHandle::Unref_), InstanceMethod("resume", &ContainerHandle::Resume)});
  }
  explicit ContainerHandle(const Napi::CallbackInfo &info) : Napi::ObjectWrap<ContainerHandle>(info) {}
  // Finalized with the watch still running only at environment teardown
  // (a running container holds a Ref() on us): the watch, which may still
  // fire in the loop runs of that teardown, must not call into freed memory.
  ~ContainerHandle() override {
    if (watch_) watch_->data = nullptr;
  }

  void Started(Napi::Env env, spawn_job *job, Napi::Function on_exit) {
    on_exit_ = Napi::Persistent(on_exit);
    ctx_ = std::make_unique<Napi::AsyncContext>(env, "nodularity:exit");
    watch_ = new exit_watch{};
    watch_->pidfd = job->pidfd;
    watch_->report_fd = job->report_rd;
    watch_->on_exit = &ContainerHandle::OnExit;
    watch_->data = this;
    uv_loop_t *loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    int r = exit_watch_start(loop, watch_);
    job->pidfd = -1;
    job->report_rd = -1;
    if (r < 0) {
      // Cannot watch: kill and reap synchronously rather than leak a zombie.
      sys_pidfd_send_signal(watch_->pidfd, SIGKILL);
      siginfo_t si;
      exit_info info{};
      sys_waitid(P_PIDFD, watch_->pidfd, &si, WEXITED, &info.rusage);
      close(watch_->pidfd);
      if (watch_->report_fd >= 0) close(watch_->report_fd);
      delete watch_;
      watch_ = nullptr;
      info.signal = SIGKILL;
      info.exit_code = 128 + SIGKILL;
      info.rusage.ru_maxrss = -1;  // the payload's is unknown (exit_watch.h)
      Finish(env, &info);
      return;
    }
    if (!ref_) exit_watch_ref(watch_, false);
  }

 private:
  static void OnExit(exit_watch *w, const exit_info *info) {
    ContainerHandle *self = static_cast<ContainerHandle *>(w->data);
    if (!self) return;  // finalized at teardown (see the destructor)
    self->watch_ = nullptr;
    self->Finish(self->Env(), info);
  }

  void Finish(Napi::Env env, const exit_info *info) {
    // Node tearing down its environment (exiting with a container still
    // running, an unref'd or detached one) runs the loop once more to close
    // handles, and our exit watch may fire there. JS cannot be called then:
    // N-API calls with a JS preamble (setting a property) fail, and
    // node-addon-api turns any failure into a fatal error. Probe with raw
    // calls first; if JS is gone, only release what we hold.
    napi_handle_scope raw;
    if (napi_open_handle_scope(env, &raw) != napi_ok) return ReleaseQuietly();
    napi_value probe;
    bool js = napi_create_object(env, &probe) == napi_ok && napi_set_named_property(env, probe, "p", probe) == napi_ok;
    napi_close_handle_scope(env, raw);
    if (!js) return ReleaseQuietly();
    Napi::HandleScope scope(env);
    Napi::Value sig = info->signal ? Napi::Value(Napi::Number::New(env, info->signal)) : env.Null();
    Napi::FunctionReference cb = std::move(on_exit_);
    Unref();  // matches the Ref() taken at spawn
    napi_value argv[4] = {Napi::Number::New(env, info->exit_code), sig, rusage_to_js(env, info->rusage),
                          Napi::Number::New(env, timing_ ? (double)info->seen_ns : 0)};
    napi_value result;
    // Raw call: during environment teardown (Node exiting with a container
    // still running) calling into JS fails, and that must not be fatal.
    napi_status st = napi_make_callback(env, *ctx_, Value(), cb.Value(), timing_ ? 4 : 3, argv, &result);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value e;
      napi_get_and_clear_last_exception(env, &e);
      if (st == napi_pending_exception) napi_fatal_exception(env, e);  // the callback threw: uncaughtException
    }
  }

  // The environment is going away: whatever we hold is freed with it (the
  // callback reference and our wrapper by their finalizers); calling into
  // anything that can throw would abort the exit.
  void ReleaseQuietly() {}

  Napi::Value Kill(const Napi::CallbackInfo &info) {
    int sig = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : SIGTERM;
    if (!watch_ || watch_->pidfd < 0) return Napi::Number::New(info.Env(), -ESRCH);
    // Already dead but not yet reaped (the exit callback is queued behind
    // this call, e.g. a timer due in the same loop turn): a signal to a
    // zombie "succeeds", which would make a timeout claim a kill it did not
    // do. A pidfd polls readable once its process has exited.
    struct pollfd pfd = {watch_->pidfd, POLLIN, 0};
    if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN)) return Napi::Number::New(info.Env(), -ESRCH);
    int r = sys_pidfd_send_signal(watch_->pidfd, sig);
    return Napi::Number::New(info.Env(), r < 0 ? -errno : 0);
  }
  // resume(ok, onSpawn): after a pause for hooks, let the child go on (or
  // give up); onSpawn is called as spawn's was.
  Napi::Value Resume(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!paused_ || info.Length() < 2 || !info[0].IsBoolean() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "resume(ok: boolean, onSpawn: function) after a pause for hooks")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto *w = new SpawnWorker(info[1].As<Napi::Function>(), this, std::move(paused_),
                              info[0].As<Napi::Boolean>().Value() ? 1 : 0);
    w->Queue();
    return env.Undefined();
  }
  Napi::Value Ref_(const Napi::CallbackInfo &info) {
    ref_ = true;
    if (watch_) exit_watch_ref(watch_, true);
    return info.Env().Undefined();
  }
  Napi::Value Unref_(const Napi::CallbackInfo &info) {
    ref_ = false;
    if (watch_) exit_watch_ref(watch_, false);
    return info.Env().Undefined();
  }

  exit_watch *watch_ = nullptr;
  bool ref_ = true;

 public:
  std::unique_ptr<spawn_job> paused_;  // a launch paused for hooks, until resume()

 private:
  Napi::FunctionReference on_exit_;
  std::unique_ptr<Napi::AsyncContext> ctx_;

 public:
  Napi::FunctionReference pending_on_exit_;  // onExit, held until the spawn completes
  bool timing_ = false;                      // a timed launch: onExit gets the time the exit was seen
};

void SpawnWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  spawn_job *job = job_.get();
  Napi::Function on_spawn = Callback().Value();
  if (job->paused) {
    // Set up but for pivot_root: the caller runs its hooks, then resume().
    Napi::Object res = Napi::Object::New(env);
    res.Set("pid", job->pid);
    res.Set("paused", true);
    handle_->paused_ = std::move(job_);
    on_spawn.Call({env.Null(), res});
    return;
  }
  Napi::Function on_exit = handle_->pending_on_exit_.Value();
  handle_->pending_on_exit_.Reset();
  if (job->failed) {
    spawn_close_all(job);
    Napi::Object err = Napi::Object::New(env);
    err.Set("step", job->error.step);
    err.Set("errno", job->error.err);
    err.Set("index", job->error.index);
    err.Set("detail", job->error.detail);
    if (!job->helper_output.empty()) err.Set("helperOutput", job->helper_output);
    handle_->Unref();
    on_spawn.Call({err});
    return;
  }
  Napi::Object res = Napi::Object::New(env);
  res.Set("pid", job->pid);
  res.Set("cloneMicros", (double)job->clone_ns / 1000.0);
  if (job->timing) {
    // ns, CLOCK_MONOTONIC (process.hrtime.bigint()'s clock), as doubles: exact below 2^53 ns (104 days of uptime).
    job->t[T_ONOK] = now_ns();
    Napi::Array t = Napi::Array::New(env, T_COUNT);
    for (uint32_t i = 0; i < T_COUNT; i++) t.Set(i, (double)job->t[i]);
    res.Set("times", t);
    // [step, ns] after each row of the child's step table, after [-1, its start]; none for a fork-style launch.
    int rows[CHILD_STEP_TIMES];
    int n = child_step_rows(rows, CHILD_STEP_TIMES - 1);
    Napi::Array steps = Napi::Array::New(env);
    for (int i = 0; i <= n && job->step_ns[0]; i++) {
      Napi::Array row = Napi::Array::New(env, 2);
      row.Set(0u, i == 0 ? -1 : rows[i - 1]);
      row.Set(1u, (double)job->step_ns[i]);
      steps.Set(steps.Length(), row);
    }
    res.Set("stepTimes", steps);
  }
  if (job->terminal_fd >= 0) {
    res.Set("terminalFd", job->terminal_fd);  // JS owns it now
    job->terminal_fd = -1;
  }
  handle_->Started(env, job, on_exit);
  on_spawn.Call({env.Null(), res});
}

// init(initPath, {ContainerError}): load the init binary, probe openat2, keep
// our own pidfd and the error class native failures are thrown as.
Napi::Value JsInit(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject() ||
      !info[1].As<Napi::Object>().Get("ContainerError").IsFunction()) {
    Napi::TypeError::New(env, "Usage: init(initPath: string, classes: {ContainerError})").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  addon_data *d = env.GetInstanceData<addon_data>();
  if (d->container_error.IsEmpty())
    d->container_error = Napi::Persistent(info[1].As<Napi::Object>().Get("ContainerError").As<Napi::Function>());
  if (g_init_fd >= 0) return env.Undefined();
  // Every mount target is resolved with openat2 inside the new root; without
  // it (Linux < 5.6) there is no safe way to do that, so say so now.
  int probe = sys_openat2(AT_FDCWD, "/", O_PATH | O_CLOEXEC, RESOLVE_NO_MAGICLINKS);
  if (probe < 0 && errno == ENOSYS) {
    throw_container_error(
        env, "this kernel lacks openat2(2) (Linux 5.6 or later is required): container paths cannot be resolved safely",
        "init", ENOSYS, "openat2");
    return env.Undefined();
  }
  if (probe >= 0) close(probe);
  if (g_self_pidfd < 0) g_self_pidfd = sys_pidfd_open(getpid(), 0);
  if (g_self_pidfd >= 0) fcntl(g_self_pidfd, F_SETFD, FD_CLOEXEC);
  if (g_null_fd[0] < 0) g_null_fd[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (g_null_fd[1] < 0) g_null_fd[1] = open("/dev/null", O_WRONLY | O_CLOEXEC);
  std::string why;
  int fd = make_init_memfd(info[0].As<Napi::String>().Utf8Value().c_str(), &why);
  if (fd < 0) {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    throw_container_error(env, "cannot load the init binary (" + why + ")", "init", -fd, nullptr, &path);
    return env.Undefined();
  }
  g_init_fd = fd;
  return env.Undefined();
}

// A launch plan converted to C once (compilePlan), shared by the launches of
// a prepared container: spawn() then converts only the launch's changes.
class CompiledPlan : public Napi::ObjectWrap<CompiledPlan> {
 public:
  static Napi::Function Define(Napi::Env env) { return DefineClass(env, "CompiledPlan", {}); }
  explicit CompiledPlan(const Napi::CallbackInfo &info) : Napi::ObjectWrap<CompiledPlan>(info) {}
  std::shared_ptr<const plan_store> store;
};

// compilePlan(plan) -> CompiledPlan, or throws the TypeError plan_from_js names.
Napi::Value JsCompilePlan(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "Usage: compilePlan(plan: object)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::unique_ptr<plan_store> st = plan_from_js(env, info[0].As<Napi::Object>());
  if (!st) return env.Undefined();
  if (st->plan.hooks_pause) {
    Napi::TypeError::New(env, "a compiled plan cannot pause for hooks").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object obj = env.GetInstanceData<addon_data>()->compiled_ctor.New({});
  CompiledPlan::Unwrap(obj)->store = std::move(st);
  return obj;
}

// The caller's per-launch fds (startGate, consoleSocket, preserveFds, rootfsFd): each
// must be open now; the child inherits them by number.
bool launch_fds_from_js(Napi::Env env, Napi::Value v, spawn_job *job) {
  if (v.IsUndefined() || v.IsNull()) return true;
  if (!v.IsObject()) {
    Napi::TypeError::New(env, "launch options must be an object").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Object o = v.As<Napi::Object>();
  auto fd = [&](const char *key, int *out) {
    Napi::Value x = o.Get(key);
    if (x.IsUndefined()) return true;
    int n = x.IsNumber() ? x.As<Napi::Number>().Int32Value() : -1;
    if (!x.IsNumber() || n < 0 || x.As<Napi::Number>().DoubleValue() != n || fcntl(n, F_GETFD) < 0) {
      Napi::TypeError::New(env, std::string(key) + " must be an open file descriptor").ThrowAsJavaScriptException();
      return false;
    }
    *out = n;
    return true;
  };
  if (!fd("startGate", &job->gate_fd) || !fd("consoleSocket", &job->console_socket)) return false;
  // A prepared launch's rootfs, pinned at prepare(): the child checks the
  // directory its path reaches against this one, not whatever the path
  // names now (spawn_prepare duplicates it, so the caller may close theirs).
  if (!fd("rootfsFd", &job->pinned_rootfs)) return false;
  job->timing = o.Get("timing").ToBoolean().Value();
  if (job->pinned_rootfs >= 0 && !job->view()->rootfs) {
    Napi::TypeError::New(env, "rootfsFd needs a plan with a rootfs").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Value pv = o.Get("preserveFds");
  if (!pv.IsUndefined()) {
    double n = pv.IsNumber() ? pv.As<Napi::Number>().DoubleValue() : -1;
    if (!(n >= 0 && n <= 4096 && n == (int)n)) {
      Napi::TypeError::New(env, "preserveFds must be a number of fds (0 to 4096)").ThrowAsJavaScriptException();
      return false;
    }
    for (int i = 3; i < 3 + (int)n; i++)
      if (fcntl(i, F_GETFD) < 0) {
        Napi::TypeError::New(env, "preserveFds: fd " + std::to_string(i) + " is not open").ThrowAsJavaScriptException();
        return false;
      }
    job->preserve_fds = (int)n;
  }
  if (job->gate_fd >= 0 && !job->view()->use_init) {
    Napi::TypeError::New(env, "startGate needs the init (plan.init)").ThrowAsJavaScriptException();
    return false;
  }
  if (job->console_socket >= 0 && !job->view()->terminal) {
    Napi::TypeError::New(env, "consoleSocket needs process.terminal").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// spawn(plan, stdio, onSpawn(err, {pid, stdio}), onExit(code, signal, rusage), launch?) -> ContainerHandle
// launch: {startGate?, consoleSocket?, preserveFds?, rootfsFd?}, the caller's fds for this launch.
Napi::Value JsSpawn(const Napi::CallbackInfo &info) {
  uint64_t t_call = now_ns();
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsObject() || !info[1].IsArray() || !info[2].IsFunction() ||
      !info[3].IsFunction()) {
    Napi::TypeError::New(env, "Usage: spawn(plan: object, stdio: array, onSpawn: function, onExit: function)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto job = std::make_unique<spawn_job>();
  Napi::Object plan_obj = info[0].As<Napi::Object>();
  if (plan_obj.InstanceOf(env.GetInstanceData<addon_data>()->compiled_ctor.Value())) {
    job->base = CompiledPlan::Unwrap(plan_obj)->store;
    job->own = std::make_unique<plan_store>();
    job->plan_view = job->base->plan;
    Napi::Value ov =
        info.Length() > 4 && info[4].IsObject() ? info[4].As<Napi::Object>().Get("override") : env.Undefined();
    if (ov.IsObject() && !plan_override_from_js(env, ov.As<Napi::Object>(), job->own.get(), &job->plan_view))
      return env.Undefined();
  } else {
    job->own = plan_from_js(env, plan_obj);
    if (!job->own) return env.Undefined();
    job->plan_view = job->own->plan;
  }
  uint64_t t_converted = now_ns();
  if (job->view()->use_init && g_init_fd < 0) {
    throw_container_error(env, "init() was not called: the init binary is not loaded", "init", ENOENT);
    return env.Undefined();
  }
  job->init_fd = g_init_fd;
  job->parent_pidfd = g_self_pidfd;
  job->null_fd[0] = g_null_fd[0];
  job->null_fd[1] = g_null_fd[1];
  if (!launch_fds_from_js(env, info.Length() > 4 ? info[4] : env.Undefined(), job.get())) return env.Undefined();
  Napi::Array stdio = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < 3 && i < stdio.Length(); i++) {
    Napi::Value v = stdio.Get(i);
    // 'pipe' | 'ignore' | 'inherit' | fd number
    if (v.IsNumber()) {
      job->stdio_kind[i] = STDIO_FD;
      job->stdio_fd[i] = v.As<Napi::Number>().Int32Value();
    } else if (v.IsString()) {
      std::string s = v.As<Napi::String>().Utf8Value();
      if (s == "pipe")
        job->stdio_kind[i] = STDIO_PIPE;
      else if (s == "ignore")
        job->stdio_kind[i] = STDIO_IGNORE;
      else if (s == "inherit")
        job->stdio_kind[i] = STDIO_INHERIT;
      else {
        Napi::TypeError::New(env, "stdio[" + std::to_string(i) + "] must be 'pipe', 'ignore', 'inherit' or an fd")
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
  }
  const char *call = "";
  int r = spawn_prepare(job.get(), &call);
  if (r < 0) {
    spawn_close_all(job.get());
    std::string rootfs = job->view()->rootfs ? job->view()->rootfs : "";
    throw_container_error(env, std::string("prepare the launch: ") + call, "prepare", -r,
                          strncmp(call, "open", 4) == 0 ? "open" : call,
                          strcmp(call, "open rootfs") == 0 ? &rootfs : nullptr);
    return env.Undefined();
  }
  Napi::Object obj = env.GetInstanceData<addon_data>()->handle_ctor.New({});
  // Our pipe ends go to JS now, so streams exist before the launch completes;
  // JS closes them if the launch fails.
  Napi::Array fds = Napi::Array::New(env, 3);
  for (int i = 0; i < 3; i++) {
    fds.Set(i, Napi::Number::New(env, job->parent_stdio[i]));
    job->parent_stdio[i] = -1;
  }
  obj.Set("stdio", fds);
  ContainerHandle *h = ContainerHandle::Unwrap(obj);
  h->Ref();  // alive until the exit (or the failed spawn) is reported
  h->pending_on_exit_ = Napi::Persistent(info[3].As<Napi::Function>());
  if (job->timing) {
    job->t[T_CALL] = t_call;
    job->t[T_CONVERTED] = t_converted;
    h->timing_ = true;
  }
  spawn_job *j = job.get();
  bool timing = job->timing;
  auto *w = new SpawnWorker(info[2].As<Napi::Function>(), h, std::move(job));
  // Before Queue(): once queued, the worker may run (and the job be freed) at once.
  if (timing) j->t[T_QUEUED] = now_ns();
  w->Queue();
  return obj;
}

// openInRoot(root, path) -> fd, or throws ContainerError (step 'open-in-root',
// code EINVAL for anything but a regular file): open a file of an image for reading the way
// the child resolves mount targets: openat2(RESOLVE_IN_ROOT |
// RESOLVE_NO_MAGICLINKS) from an fd of the root, so neither a symlink nor ".."
// in the image can reach a host file. O_NONBLOCK (a FIFO must not hang the
// caller; the caller checks the type with fstat) and O_NOCTTY.
Napi::Value JsOpenInRoot(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "Usage: openInRoot(root: string, path: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string root = info[0].As<Napi::String>().Utf8Value();
  std::string path = info[1].As<Napi::String>().Utf8Value();
  int err = 0;
  int fd = -1;
  // Resolve with O_PATH first: an O_RDONLY open runs the file's open
  // handler, so a device node in the image (/etc/passwd as c 1 3, or ptmx)
  // would be opened on the host before fstat could refuse it. O_PATH opens
  // nothing; only a regular file is then reopened for reading, through its
  // /proc/self/fd link (the inode already found, no new path walk).
  int rfd = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rfd < 0)
    err = errno;
  else {
    int pfd;
    do {
      pfd = sys_openat2(rfd, path.c_str(), O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
    } while (pfd < 0 && errno == EAGAIN);
    if (pfd < 0)
      err = errno;
    else {
      struct stat st;
      if (fstat(pfd, &st) < 0)
        err = errno;
      else if (!S_ISREG(st.st_mode))
        err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
      else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", pfd);
        fd = open(link, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) err = errno;
      }
      close(pfd);
    }
    close(rfd);
  }
  if (fd < 0) {
    // EINVAL: not a regular file (a device, FIFO or socket in the image).
    const char *what = err == EINVAL ? "not a regular file" : "cannot open";
    throw_container_error(env, std::string(what) + ": " + path + " in " + root, "open-in-root", err, "openat2", &path);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// setWindowSize(fd, rows, cols): TIOCSWINSZ on a pty master (a container's
// terminal); the kernel sends SIGWINCH to its foreground process group.
Napi::Value JsSetWindowSize(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "Usage: setWindowSize(fd: number, rows: number, cols: number)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct winsize ws = {(unsigned short)info[1].As<Napi::Number>().Uint32Value(),
                       (unsigned short)info[2].As<Napi::Number>().Uint32Value(), 0, 0};
  if (ioctl(info[0].As<Napi::Number>().Int32Value(), TIOCSWINSZ, &ws) < 0) return Napi::Number::New(env, -errno);
  return Napi::Number::New(env, 0);
}

// makeRaw(fd) -> Buffer (the previous termios): cfmakeraw, as ssh and
// `docker run -it` put the local terminal while relaying a remote one.
// Node's setRawMode keeps ONLCR, which would turn the container's \r\n into
// \r\r\n. restoreTerminal(fd, saved) puts it back.
Napi::Value JsMakeRaw(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "Usage: makeRaw(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct termios old, raw;
  if (tcgetattr(fd, &old) < 0) return Napi::Number::New(env, -errno);
  raw = old;
  cfmakeraw(&raw);
  if (tcsetattr(fd, TCSANOW, &raw) < 0) return Napi::Number::New(env, -errno);
  return Napi::Buffer<char>::Copy(env, (const char *)&old, sizeof old);
}

Napi::Value JsRestoreTerminal(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBuffer() ||
      info[1].As<Napi::Buffer<char>>().Length() != sizeof(struct termios)) {
    Napi::TypeError::New(env, "Usage: restoreTerminal(fd: number, saved: Buffer from makeRaw)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct termios t;
  memcpy(&t, info[1].As<Napi::Buffer<char>>().Data(), sizeof t);
  if (tcsetattr(info[0].As<Napi::Number>().Int32Value(), TCSADRAIN, &t) < 0) return Napi::Number::New(env, -errno);
  return Napi::Number::New(env, 0);
}

// makePipe() -> [read, write] or -errno: a close-on-exec pipe, for a start
// gate the library holds itself (lib/container.ts: a container with a cgroup
// is released once its init is in it). Node has no pipe(2) of its own.
Napi::Value JsMakePipe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return Napi::Number::New(env, -errno);
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, fds[0]));
  a.Set(1u, Napi::Number::New(env, fds[1]));
  return a;
}

// connectUnixSocket(path) -> fd: a connected AF_UNIX stream socket
// (SOCK_CLOEXEC, blocking), e.g. runc's --console-socket, which Node's net
// module cannot hand out as an fd. -errno on failure.
Napi::Value JsConnectUnixSocket(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "Usage: connectUnixSocket(path: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path || path.find('\0') != std::string::npos)
    return Napi::Number::New(env, -ENAMETOOLONG);
  memcpy(sa.sun_path, path.c_str(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Napi::Number::New(env, -errno);
  int r;
  do {
    r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    close(fd);
    return Napi::Number::New(env, -e);
  }
  return Napi::Number::New(env, fd);
}

// nsType(path) -> CLONE_NEW* of the namespace file at path (NS_GET_NSTYPE),
// or -errno (ENOTTY/EINVAL: not a namespace file).
Napi::Value JsNsType(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "Usage: nsType(path: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return Napi::Number::New(env, -errno);
  int t = ioctl(fd, NS_GET_NSTYPE);
  int e = errno;
  close(fd);
  return Napi::Number::New(env, t < 0 ? -e : t);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = ContainerHandle::Define(env);
  auto *data = new addon_data;
  data->handle_ctor = Napi::Persistent(ctor);
  data->compiled_ctor = Napi::Persistent(CompiledPlan::Define(env));
  env.SetInstanceData(data);
  exports.Set("init", Napi::Function::New(env, JsInit, "init"));
  exports.Set("spawn", Napi::Function::New(env, JsSpawn, "spawn"));
  exports.Set("compilePlan", Napi::Function::New(env, JsCompilePlan, "compilePlan"));
  exports.Set("openInRoot", Napi::Function::New(env, JsOpenInRoot, "openInRoot"));
  exports.Set("setWindowSize", Napi::Function::New(env, JsSetWindowSize, "setWindowSize"));
  exports.Set("makeRaw", Napi::Function::New(env, JsMakeRaw, "makeRaw"));
  exports.Set("restoreTerminal", Napi::Function::New(env, JsRestoreTerminal, "restoreTerminal"));
  exports.Set("nsType", Napi::Function::New(env, JsNsType, "nsType"));
  exports.Set("connectUnixSocket", Napi::Function::New(env, JsConnectUnixSocket, "connectUnixSocket"));
  exports.Set("makePipe", Napi::Function::New(env, JsMakePipe, "makePipe"));
  exports.Set("ContainerHandle", ctor);
  seccomp_register(env, exports);
  bpf_devices_register(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(nodularity, Init)
