;; size-limit: a Cloister policy module written by hand in WebAssembly text,
;; without the Rust SDK, to show the policy ABI (version 1) is language-neutral.
;;
;; It denies any evaluation whose input message (the JSON the host writes:
;; module config plus request) is over 64 KiB, and allows everything else.
;; That bounds what one query can push through the gates and the model.
;;
;; Memory layout: the two decisions live in a data segment at 16 and 64;
;; the host's input is written from 4096 on, the memory growing to fit.
(module
  (memory (export "memory") 1)

  ;; {"effect":"allow"}  (18 bytes)
  (data (i32.const 16) "{\"effect\":\"allow\"}")
  ;; the denial  (117 bytes)
  (data (i32.const 64) "{\"effect\":\"deny\",\"reasons\":[{\"code\":\"input_too_large\",\"message\":\"the query is over the 64 KiB this module accepts\"}]}")

  ;; ABI version marker: never called.
  (func (export "cloister_policy_abi_v1"))

  ;; Room for `len` input bytes at 4096, growing memory as needed.
  ;; Returns -1 (an address outside memory, so the host's write fails and
  ;; the evaluation denies) if memory cannot grow.
  (func (export "cloister_alloc") (param $len i32) (result i32)
    (local $needed i32)
    ;; pages needed for 4096 + len bytes, rounded up
    (local.set $needed
      (i32.shr_u (i32.add (i32.add (local.get $len) (i32.const 4096)) (i32.const 65535))
                 (i32.const 16)))
    (if (i32.gt_u (local.get $needed) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $needed) (memory.size))) (i32.const -1))
          (then (return (i32.const -1))))))
    (i32.const 4096))

  ;; (ptr, len) -> (decision_ptr << 32) | decision_len
  (func (export "cloister_evaluate") (param $ptr i32) (param $len i32) (result i64)
    (if (result i64) (i32.gt_u (local.get $len) (i32.const 65536))
      (then (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 117)))
      (else (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 18))))))
