-- What `deriver-live honcho detach` runs: Honcho's tables as they were before `attach`.
DROP TRIGGER IF EXISTS deriver_live_queue_insert ON public.queue;
DROP TRIGGER IF EXISTS deriver_live_queue_update ON public.queue;
DROP TRIGGER IF EXISTS deriver_live_queue_delete ON public.queue;
DROP TRIGGER IF EXISTS deriver_live_held_insert ON public.active_queue_sessions;
DROP TRIGGER IF EXISTS deriver_live_held_delete ON public.active_queue_sessions;
DROP SCHEMA IF EXISTS deriver_live_honcho CASCADE;
