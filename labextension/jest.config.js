/**
 * ts-jest in jsdom. @jupyterlab/services is mocked at the network boundary in
 * the tests; @jupyterlab/coreutils ships ES modules, so it is transpiled too.
 */
const esModules = ['@jupyterlab/coreutils'].join('|');

module.exports = {
  testEnvironment: 'jsdom',
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: './tsconfig.test.json' }],
    '^.+\\.js$': [
      'ts-jest',
      {
        tsconfig: {
          allowJs: true,
          isolatedModules: true,
          module: 'commonjs',
          target: 'ES2019'
        }
      }
    ]
  },
  transformIgnorePatterns: [`/node_modules/(?!(${esModules})/)`],
  moduleNameMapper: {
    '\\.(css|svg)$': '<rootDir>/src/__tests__/fileMock.js'
  },
  setupFiles: ['<rootDir>/jest.setup.js'],
  testRegex: 'src/__tests__/.*\\.spec\\.ts$',
  testPathIgnorePatterns: ['/lib/', '/node_modules/'],
  collectCoverageFrom: ['src/**/*.ts', '!src/**/*.d.ts', '!src/__tests__/**'],
  // Files only: a coverage table in the test command's output buries the results.
  coverageReporters: ['lcov', 'json-summary']
};
