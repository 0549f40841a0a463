// Conversion of the JS LaunchPlan (plain data, validated by lib/plan) into
// the flat launch_plan the child reads.
#ifndef NODULARITY_PLAN_JS_H
#define NODULARITY_PLAN_JS_H

#include <napi.h>
#include "plan.h"

// Returns nullptr with a pending TypeError naming the field at fault.
std::unique_ptr<plan_store> plan_from_js(Napi::Env env, Napi::Object obj);

// A launch's changes to a compiled plan (a prepared container's launches):
// {execPath?, args?, env?, hostname?} read into `own` (its storage) and set
// on `p`, a copy of the compiled plan. Returns false with a pending TypeError.
bool plan_override_from_js(Napi::Env env, Napi::Object obj, plan_store *own, launch_plan *p);

#endif
