// Type check of clients/js/relureg.d.ts (`make browser` runs tsc --noEmit --strict on this
// file): the README's uses type-check, and misuses are errors (@ts-expect-error fails the
// check when the line is NOT an error, so loose `any` types cannot pass).
import { Client, Job, JobCancelled, ProblemError, tensor, type Answer } from '../../clients/js/relureg.js';

async function uses(): Promise<void> {
  const rr = new Client('http://127.0.0.1:8080', { token: null, binary: true, retries: 3 });
  const { models } = await rr.models();
  const first: string = models[0].name;
  const d = await rr.dataset('test', { limit: 8 });
  const x = tensor(d.images.shape, d.images.data);
  const ctl = new AbortController();
  const p: Answer = await rr.predict(first, x, { signal: ctl.signal });
  const r: Answer = await rr.regularizers(first, x, d.labels,
    ['input_gradient', { name: 'jacobian', estimator: 'exact' }], { gradients: ['inputs'] });
  const a: Answer = await rr.attack(first, x, d.labels, { attack: 'pgd', norm: 'linf', epsilon: 0.1 });
  const job: Job = await rr.robustness(first, x, d.labels, { epsilons: [0.1], async: true });
  const report: Answer = await job.wait({ onProgress: (f: number) => console.log(f), signal: ctl.signal });
  ctl.abort();
  try {
    await rr.model('nope');
  } catch (e) {
    if (e instanceof ProblemError) console.log(e.status, e.detail, e.field);
    if (e instanceof JobCancelled) console.log(e.job.status);
  }
  console.log(p, r, a, report);
}

async function misuses(rr: Client): Promise<void> {
  // @ts-expect-error: the model name is a string
  await rr.predict(3, tensor([1], [0]));
  // @ts-expect-error: a signal is an AbortSignal
  await rr.models({ signal: 'stop' });
  // @ts-expect-error: a synchronous call answers a document, not a Job
  const j: Job = await rr.predict('m', tensor([1], [0]));
  // @ts-expect-error: Job.wait's progress callback takes a number
  await new Job(rr, 'x').wait({ onProgress: (f: string) => console.log(f) });
  console.log(j);
}

export { uses, misuses };
