import type { z } from 'zod';

/** One line per zod issue: `field.path: reason`. Used for every error that names a bad field. */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join('.') : '(root)';
    return `${path}: ${issue.message}`;
  });
}
